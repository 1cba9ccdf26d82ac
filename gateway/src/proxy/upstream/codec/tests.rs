use super::*;

/// A request head as the proxy makes it: line, `headers` (written as given), then framing.
fn head(method: Method, headers: &[(&str, &str)], body_len: Option<u64>) -> (String, Framing) {
    let mut out = Vec::new();
    assert!(request_line(&method, &["/a", "/b"], Some("c=1"), &mut out));
    for (k, v) in headers {
        write_header(&mut out, k.as_bytes(), v.as_bytes());
    }
    let framing = end_head(&method, body_len, false, &mut out);
    (String::from_utf8(out).unwrap(), framing)
}

#[test]
fn a_body_less_get_goes_without_framing_headers() {
    let (text, framing) = head(Method::GET, &[("host", "up"), ("x-a", "1")], Some(0));
    assert_eq!(text, "GET /a/b?c=1 HTTP/1.1\r\nhost: up\r\nx-a: 1\r\n\r\n");
    assert_eq!(framing, Framing::Empty);
    // A client that said `Content-Length: 0` is repeated.
    let mut out = Vec::new();
    assert_eq!(
        end_head(&Method::GET, Some(0), true, &mut out),
        Framing::Empty
    );
    assert_eq!(out, b"content-length: 0\r\n\r\n");
}

#[test]
fn a_target_that_could_split_the_request_line_is_refused() {
    for (path, query) in [
        ("/a b", None),
        ("/a\r\nx-injected: 1", None),
        ("/a", Some("q=1 HTTP/1.1\r\n")),
        ("/a\x7f", None),
    ] {
        let mut out = Vec::new();
        assert!(
            !request_line(&Method::GET, &["/", path], query, &mut out),
            "{path:?}"
        );
        assert!(out.is_empty());
    }
    let mut out = Vec::new();
    assert!(request_line(
        &Method::GET,
        &["/caf\u{e9}/%2F"],
        None,
        &mut out
    ));
    assert_eq!(out, "GET /caf\u{e9}/%2F HTTP/1.1\r\n".as_bytes());
}

#[test]
fn the_body_is_framed_by_its_length_or_chunked() {
    let (text, framing) = head(Method::POST, &[("host", "up")], Some(4));
    assert_eq!(
        text,
        "POST /a/b?c=1 HTTP/1.1\r\nhost: up\r\ncontent-length: 4\r\n\r\n"
    );
    assert_eq!(framing, Framing::Length(4));
    let (text, framing) = head(Method::POST, &[("host", "up")], None);
    assert!(text.ends_with("host: up\r\ntransfer-encoding: chunked\r\n\r\n"));
    assert_eq!(framing, Framing::Chunked);
    let (text, framing) = head(Method::POST, &[], Some(0));
    assert!(text.ends_with("\r\ncontent-length: 0\r\n\r\n"), "{text}");
    assert_eq!(framing, Framing::Empty);
}

#[test]
fn chunks_and_the_last_chunk_are_coded() {
    let mut out = Vec::new();
    chunk(b"hello world, 26 bytes long", &mut out);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    last_chunk(Some(&trailers), &mut out);
    assert_eq!(
        out,
        b"1a\r\nhello world, 26 bytes long\r\n0\r\ngrpc-status: 0\r\n\r\n"
    );
}

fn parse(text: &str) -> io::Result<Option<ResponseHead>> {
    response_head(text.as_bytes(), false, 0)
}

#[test]
fn a_response_head_is_read_only_when_complete() {
    assert!(parse("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n")
        .unwrap()
        .is_none());
    let text = "HTTP/1.1 201 Created\r\ncontent-length: 2\r\nx-b: 1\r\n\r\nok";
    let h = parse(text).unwrap().unwrap();
    assert_eq!(h.response.status(), StatusCode::CREATED);
    assert_eq!(h.response.headers()["x-b"], "1");
    assert_eq!(h.len, text.len() - 2);
    assert_eq!(h.framing, Framing::Length(2));
    assert!(h.keep_alive);
}

#[test]
fn hop_by_hop_headers_and_those_connection_names_stay_with_the_upstream() {
    let text = "HTTP/1.1 200 OK\r\nconnection: keep-alive, x-secret\r\nx-secret: 1\r\n\
                keep-alive: timeout=5\r\nx-kept: 1\r\nupgrade: h2c\r\n\
                transfer-encoding: chunked\r\nproxy-connection: close\r\n\r\n";
    let h = parse(text).unwrap().unwrap();
    let names: Vec<_> = h.response.headers().keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["x-kept"]);
    // What they said still counts for this hop.
    assert_eq!(h.framing, Framing::Chunked);
    assert!(h.keep_alive);
}

#[test]
fn framing_follows_rfc_9112() {
    let framing = |text: &str| parse(text).unwrap().unwrap().framing;
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n"),
        Framing::Chunked
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n"),
        Framing::UntilClose
    );
    assert_eq!(framing("HTTP/1.1 200 OK\r\n\r\n"), Framing::UntilClose);
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
        Framing::Empty
    );
    for status in ["204 No Content", "304 Not Modified", "100 Continue"] {
        let text = format!("HTTP/1.1 {status}\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(framing(&text), Framing::Empty, "{status}");
    }
    let to_head = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n";
    let h = response_head(to_head.as_bytes(), true, 0).unwrap().unwrap();
    assert_eq!(h.framing, Framing::Empty);
    assert_eq!(h.response.headers()["content-length"], "5");
}

#[test]
fn connections_are_reused_only_when_the_response_allows_it() {
    let keep = |text: &str| parse(text).unwrap().unwrap().keep_alive;
    assert!(!keep(
        "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n"
    ));
    assert!(!keep("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n"));
    assert!(keep(
        "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 1\r\n\r\n"
    ));
    // Both framings at once: Transfer-Encoding wins and the connection is not trusted again.
    let both = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n";
    let h = parse(both).unwrap().unwrap();
    assert_eq!(h.framing, Framing::Chunked);
    assert!(!h.keep_alive);
}

#[test]
fn malformed_response_heads_are_errors() {
    for text in [
        "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: +1\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 1, 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        "SSH-2.0-OpenSSH\r\n\r\n",
    ] {
        let e = parse(text).expect_err(text);
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{text}");
    }
    let same_twice = "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\n";
    assert_eq!(
        parse(same_twice).unwrap().unwrap().framing,
        Framing::Length(1)
    );
    let endless = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD_BYTES));
    assert!(parse(&endless).is_err());
}

/// Feeds `coded` to a decoder `step` bytes at a time; returns the data and the trailers.
fn decode_in_steps(coded: &[u8], step: usize) -> io::Result<(Vec<u8>, Option<HeaderMap>)> {
    let (mut decoder, mut buf) = (Chunked::default(), BytesMut::new());
    let (mut data, mut trailers) = (Vec::new(), None);
    let mut input = coded.chunks(step);
    loop {
        match decoder.decode(&mut buf)? {
            Some(Decoded::Data(d)) => data.extend_from_slice(&d),
            Some(Decoded::Trailers(t)) => trailers = Some(t),
            Some(Decoded::End) => return Ok((data, trailers)),
            None => match input.next() {
                Some(more) => buf.extend_from_slice(more),
                None => return Err(io::ErrorKind::UnexpectedEof.into()),
            },
        }
    }
}

#[test]
fn chunked_bodies_decode_however_the_bytes_arrive() {
    let coded = b"5;name=value\r\nhello\r\n19 \r\n, and twenty more bytes..\r\n0\r\n\r\n";
    for step in [1, 2, 3, 7, coded.len()] {
        let (data, trailers) = decode_in_steps(coded, step).unwrap();
        assert_eq!(data, b"hello, and twenty more bytes..", "step {step}");
        assert!(trailers.is_none());
    }
    let with_trailers = b"2\r\nok\r\n0\r\ngrpc-status: 0\r\nx-t: 1\r\n\r\n";
    for step in [1, 5, with_trailers.len()] {
        let (data, trailers) = decode_in_steps(with_trailers, step).unwrap();
        assert_eq!(data, b"ok");
        let trailers = trailers.expect("trailers");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(trailers["x-t"], "1");
    }
}

#[test]
fn a_decoder_leaves_what_follows_the_body_in_the_buffer() {
    let mut buf = BytesMut::from(&b"2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n"[..]);
    let mut decoder = Chunked::default();
    assert_eq!(
        decoder.decode(&mut buf).unwrap(),
        Some(Decoded::Data(Bytes::from_static(b"ok")))
    );
    assert_eq!(decoder.decode(&mut buf).unwrap(), Some(Decoded::End));
    assert_eq!(&buf[..], b"HTTP/1.1 200 OK\r\n");
}

#[test]
fn malformed_chunked_bodies_are_errors() {
    for coded in [
        &b"x\r\nhello\r\n0\r\n\r\n"[..],
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloXX0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5 5\r\nhello\r\n0\r\n\r\n",
        b"1000000000000000\r\n",
    ] {
        let e = decode_in_steps(coded, 1).expect_err(&String::from_utf8_lossy(coded));
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
    let long_line = [b"1;".as_slice(), &[b'x'; MAX_CHUNK_LINE]].concat();
    assert!(decode_in_steps(&long_line, 512).is_err());
}

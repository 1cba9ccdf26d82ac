//! HTTP/1.1 framing of the upstream exchange (RFC 9112): the request line and the body's
//! framing written as bytes (`headers` writes the rest of the head), the response head parsed
//! with httparse, and chunked bodies decoded.
//!
//! Kept apart from the sockets so that every framing rule is a pure function over a buffer,
//! tested here byte by byte: this is where a proxy's HTTP/1 bugs (smuggling, truncated or
//! run-on bodies) live.
use bytes::{Buf, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};
use std::io;
use std::mem::MaybeUninit;

/// Headers that describe one connection and are not forwarded (RFC 9110 §7.6.1), and
/// `Upgrade`, which the proxy does not pass on either.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// A response head larger than this is refused (nginx's `proxy_buffer_size` is 4-8 KiB).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;
/// A chunk-size line longer than this is refused (it is a hex number and extensions).
const MAX_CHUNK_LINE: usize = 4096;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the upstream closes the connection (responses only).
    UntilClose,
}

pub fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Writes the request line: the method, the target in origin form (the path, given in pieces
/// written one after the other, and the query), HTTP/1.1.
/// Returns `false`, writing nothing, when the target holds a byte a request line cannot carry
/// (a space or a control byte: what would let a request smuggle another).
pub fn request_line(
    method: &Method,
    path: &[&str],
    query: Option<&str>,
    out: &mut Vec<u8>,
) -> bool {
    let carried = |s: &str| s.bytes().all(|b| b > b' ' && b != 0x7f);
    if !path.iter().all(|p| carried(p)) || !query.is_none_or(carried) {
        return false;
    }
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    for piece in path {
        out.extend_from_slice(piece.as_bytes());
    }
    if let Some(q) = query {
        out.push(b'?');
        out.extend_from_slice(q.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    true
}

/// Ends a request head whose other headers are written: adds the body's framing header and
/// the blank line, and returns how the body follows. `body_len` is the body's length when
/// known (`None`: streamed with chunked coding); `declared` says whether the client sent a
/// `Content-Length` (the gateway writes its own, never the client's).
pub fn end_head(
    method: &Method,
    body_len: Option<u64>,
    declared: bool,
    out: &mut Vec<u8>,
) -> Framing {
    let framing = match body_len {
        // A body-less GET says nothing; a POST with an empty body says `Content-Length: 0`,
        // as does any request whose client said so.
        Some(0) if !declared && !expects_body(method) => Framing::Empty,
        Some(len) => {
            write_header(out, b"content-length", len.to_string().as_bytes());
            if len == 0 {
                Framing::Empty
            } else {
                Framing::Length(len)
            }
        }
        None => {
            write_header(out, b"transfer-encoding", b"chunked");
            Framing::Chunked
        }
    };
    out.extend_from_slice(b"\r\n");
    framing
}

fn expects_body(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

/// One `name: value` header line.
pub fn write_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A chunk of a streamed request body, in chunked coding: size line, data, CRLF.
pub fn chunk(data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The end of a chunked request body, with its trailers.
pub fn last_chunk(trailers: Option<&HeaderMap>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        write_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub response: Response<()>,
    /// Bytes of the head in the buffer.
    pub len: usize,
    pub framing: Framing,
    /// Whether the connection can carry another request after this response's body.
    pub keep_alive: bool,
}

/// Parses a response head at the start of `buf`; `None` while it is incomplete. `head_request`:
/// the request was a HEAD, whose response has no body whatever its headers say. The headers
/// come without the hop-by-hop ones (and those `Connection` names), in a map with `room` for
/// as many more.
pub fn response_head(
    buf: &[u8],
    head_request: bool,
    room: usize,
) -> io::Result<Option<ResponseHead>> {
    // Left uninitialised: filling 128 empty slots (4 KiB) cost more than parsing the head.
    let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    let len = match config.parse_response_with_uninit_headers(&mut parsed, buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(invalid("the upstream's response head is too large"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(invalid(format!(
                "invalid response head from the upstream: {e}"
            )))
        }
    };
    let status = StatusCode::from_u16(parsed.code.unwrap_or(0))
        .map_err(|_| invalid("invalid status code from the upstream"))?;
    let version = if parsed.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let (headers, said) = end_to_end_headers(parsed.headers, room)?;
    let no_body = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if no_body {
        Framing::Empty
    } else {
        said.framing()
    };
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    Ok(Some(ResponseHead {
        response,
        len,
        framing,
        keep_alive: said.persistent(version) && framing != Framing::UntilClose,
    }))
}

/// What a response's framing and connection headers said.
#[derive(Default)]
struct Said {
    length: Option<u64>,
    /// The last transfer coding is `chunked`.
    chunked: bool,
    /// Some transfer coding is not.
    other_coding: bool,
    close: bool,
    keep_alive: bool,
}

impl Said {
    fn encoded(&self) -> bool {
        self.chunked || self.other_coding
    }

    fn framing(&self) -> Framing {
        match (self.encoded(), self.length) {
            // Transfer-Encoding overrides Content-Length.
            (true, _) if self.chunked => Framing::Chunked,
            (true, _) => Framing::UntilClose,
            (false, Some(0)) => Framing::Empty,
            (false, Some(n)) => Framing::Length(n),
            (false, None) => Framing::UntilClose,
        }
    }

    /// Whether the connection outlives the response. Both framings at once is a smuggling
    /// sign: such a connection is not trusted again.
    fn persistent(&self, version: Version) -> bool {
        let open = if version == Version::HTTP_10 {
            self.keep_alive && !self.close
        } else {
            !self.close
        };
        open && !(self.encoded() && self.length.is_some())
    }

    /// Takes in one header, if it is a framing or connection one.
    fn read<'a>(
        &mut self,
        name: &HeaderName,
        value: &'a [u8],
        named: &mut Vec<&'a [u8]>,
    ) -> io::Result<()> {
        if name == header::CONTENT_LENGTH {
            let n = content_length(value)?;
            if self.length.is_some_and(|l| l != n) {
                return Err(invalid("conflicting Content-Length from the upstream"));
            }
            self.length = Some(n);
        } else if name == header::TRANSFER_ENCODING {
            // Only the last coding decides whether the body is chunked.
            for coding in tokens(value) {
                self.chunked = coding.eq_ignore_ascii_case(b"chunked");
                self.other_coding |= !self.chunked;
            }
        } else if name == header::CONNECTION {
            for token in tokens(value) {
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
            named.extend(connection_options(value));
        }
        Ok(())
    }
}

/// The headers that go on to the client (hop-by-hop ones and those `Connection` names left
/// out), in a map with `room` for more, and what the framing ones said.
fn end_to_end_headers(
    fields: &[httparse::Header<'_>],
    room: usize,
) -> io::Result<(HeaderMap, Said)> {
    let mut headers = HeaderMap::with_capacity(fields.len() + room);
    let (mut said, mut named) = (Said::default(), Vec::new());
    for h in fields {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| invalid("invalid header name from the upstream"))?;
        said.read(&name, h.value, &mut named)?;
        if !HOP_BY_HOP.contains(&name) {
            let value = HeaderValue::from_bytes(h.value)
                .map_err(|_| invalid("invalid header value from the upstream"))?;
            headers.append(name, value);
        }
    }
    for token in named {
        if let Ok(name) = HeaderName::from_bytes(token) {
            headers.remove(name);
        }
    }
    Ok((headers, said))
}

/// A `Content-Length` value: digits only (no sign, no spaces inside, no list).
fn content_length(value: &[u8]) -> io::Result<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(invalid("invalid Content-Length from the upstream"));
    }
    Ok(digits.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// The header names a `Connection` value lists for this hop only: its tokens but `close` and
/// `keep-alive`, which name no header.
pub fn connection_options(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    tokens(value)
        .filter(|t| !t.eq_ignore_ascii_case(b"close") && !t.eq_ignore_ascii_case(b"keep-alive"))
}

/// The comma-separated tokens of a header value, trimmed, empty ones skipped.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// What the chunked decoder found at the front of the buffer.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    Data(Bytes),
    Trailers(HeaderMap),
    End,
}

/// Where a chunked body's decoding stands.
#[derive(Debug, Default)]
pub enum Chunked {
    /// Expecting a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailers or the final CRLF.
    Trailers,
    Done,
}

impl Chunked {
    /// Decodes from the front of `buf`, consuming what it used; `None` when it needs more.
    pub fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Decoded>> {
        loop {
            match self {
                Chunked::Size => {
                    let Some(line) = line_len(buf, MAX_CHUNK_LINE)? else {
                        return Ok(None);
                    };
                    let size = chunk_size(&buf[..line - 2])?;
                    buf.advance(line);
                    *self = if size == 0 {
                        Chunked::Trailers
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = (*left).min(buf.len() as u64) as usize;
                    *left -= n as u64;
                    if *left == 0 {
                        *self = Chunked::DataEnd;
                    }
                    return Ok(Some(Decoded::Data(buf.split_to(n).freeze())));
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(invalid("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers => return self.trailers(buf),
                Chunked::Done => return Ok(Some(Decoded::End)),
            }
        }
    }

    fn trailers(&mut self, buf: &mut BytesMut) -> io::Result<Option<Decoded>> {
        if buf.starts_with(b"\r\n") {
            buf.advance(2);
            *self = Chunked::Done;
            return Ok(Some(Decoded::End));
        }
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let (len, fields) = match httparse::parse_headers(buf, &mut slots) {
            Ok(httparse::Status::Complete(done)) => done,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
                return Err(invalid("the upstream's trailers are too large"))
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(invalid(format!("invalid trailers from the upstream: {e}"))),
        };
        let mut trailers = HeaderMap::with_capacity(fields.len());
        for f in fields {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(f.name.as_bytes()),
                HeaderValue::from_bytes(f.value),
            ) {
                trailers.append(name, value);
            }
        }
        buf.advance(len);
        *self = Chunked::Done;
        Ok(Some(Decoded::Trailers(trailers)))
    }
}

/// The length of the CRLF-ended line at the start of `buf`, CRLF included.
fn line_len(buf: &[u8], max: usize) -> io::Result<Option<usize>> {
    match buf.iter().take(max).position(|&b| b == b'\n') {
        Some(i) if i > 0 && buf[i - 1] == b'\r' => Ok(Some(i + 1)),
        Some(_) => Err(invalid("chunk-size line not ended by CRLF")),
        None if buf.len() >= max => Err(invalid("chunk-size line too long")),
        None => Ok(None),
    }
}

/// A chunk-size line's number: hex digits, then optional whitespace and `;extensions`.
fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let rest = line[digits..].trim_ascii_start();
    if digits == 0 || digits > 15 || !(rest.is_empty() || rest[0] == b';') {
        return Err(invalid("invalid chunk size from the upstream"));
    }
    let hex = std::str::from_utf8(&line[..digits]).expect("hex digits are ASCII");
    Ok(u64::from_str_radix(hex, 16).expect("at most 15 hex digits fit in a u64"))
}

#[cfg(test)]
mod tests;

//! grpc-web: lets browsers call gRPC services (the gRPC-Web protocol, PROTOCOL-WEB.md in
//! grpc/grpc). A gRPC-Web request over HTTP/1.1 or HTTP/2 goes upstream as a gRPC call
//! (`Content-Type: application/grpc`, `TE: trailers`, the text mode's base64 body decoded), and
//! the answer comes back in the client's form: its content type, the gRPC trailers as a final
//! frame flagged 0x80 in the body, and the whole body base64-encoded in text mode, chunk by
//! chunk as it streams (Kong's kong/plugins/grpc-web, whose spec is
//! spec/03-plugins/32-grpc-web/01-proxy_spec.lua).
//!
//! Kong transcodes JSON (`application/grpc-web+json`, `application/json`) with the `.proto`
//! file `proto` names; Tollgate does not: such requests get Kong's 400 without `proto`, and a
//! 400 saying so with it (listed in the README's differences).
use super::{get_str, Access, Context, Flow, FrameMap, Handler, PluginSpec, Reply};
use crate::model::schema::{field, FieldErrors, Ty};
use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use hyper::body::Frame;
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub const SPEC: PluginSpec = PluginSpec {
    name: "grpc-web",
    priority: 3,
    no_consumer: false,
    fields: &[
        field("proto", Ty::Str),
        field("pass_stripped_path", Ty::Bool),
        field("allow_origin_header", Ty::Str),
    ],
    defaults,
    validate,
    build,
};

fn defaults() -> Map<String, Value> {
    let v = json!({"proto": null, "pass_stripped_path": null, "allow_origin_header": "*"});
    v.as_object().cloned().unwrap_or_default()
}

fn validate(c: &mut Map<String, Value>, errors: &mut FieldErrors) {
    let origin = get_str(c, "allow_origin_header").unwrap_or("*");
    if HeaderValue::from_str(origin).is_err() {
        errors.add("allow_origin_header", "not a valid header value");
    }
}

fn build(
    c: &Map<String, Value>,
    _: &super::chain::Scope,
    _: &Arc<super::Shared>,
) -> Result<Arc<dyn Handler>, String> {
    let origin = get_str(c, "allow_origin_header").unwrap_or("*");
    Ok(Arc::new(GrpcWeb {
        allow_origin: HeaderValue::from_str(origin).map_err(|e| e.to_string())?,
        has_proto: get_str(c, "proto").is_some(),
        pass_stripped_path: super::get_bool(c, "pass_stripped_path"),
    }))
}

struct GrpcWeb {
    allow_origin: HeaderValue,
    has_proto: bool,
    /// The gRPC service gets the path as the route stripped it, not the client's.
    pass_stripped_path: bool,
}

/// How a gRPC-Web body is carried: as is, or base64 text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Binary,
    Text,
}

/// The mode of a gRPC-Web content type carrying protobuf (Kong's deco.lua tables); `None`
/// for the JSON ones and anything else.
fn mode(content_type: &[u8]) -> Option<Mode> {
    match content_type {
        b"application/grpc-web" | b"application/grpc-web+proto" => Some(Mode::Binary),
        b"application/grpc-web-text" | b"application/grpc-web-text+proto" => Some(Mode::Text),
        _ => None,
    }
}

impl Handler for GrpcWeb {
    fn access<'a>(&'a self, ctx: &'a mut Context<'_>) -> Access<'a> {
        ctx.response_headers.push((
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin.clone(),
        ));
        if ctx.parts.method == Method::OPTIONS {
            return Access::Now(Flow::Respond(self.preflight()));
        }
        let content_type = ctx.parts.headers.get(header::CONTENT_TYPE).cloned();
        let Some(mode) = content_type.as_ref().and_then(|c| mode(c.as_bytes())) else {
            let message = if self.has_proto {
                "Tollgate does not transcode JSON to gRPC: use application/grpc-web+proto"
            } else {
                "transcoding requests require a .proto file defining the service"
            };
            return Access::Now(Flow::Respond(Reply::new(StatusCode::BAD_REQUEST, message)));
        };
        ctx.grpc_stripped_path = self.pass_stripped_path;
        let grpc = HeaderValue::from_static("application/grpc");
        ctx.set_upstream_header(header::CONTENT_TYPE, Some(grpc));
        ctx.set_upstream_header(header::TE, Some(HeaderValue::from_static("trailers")));
        let mimetype = content_type.expect("a mode comes from a content type");
        ctx.response_plugins
            .push(Arc::new(WebResponse { mode, mimetype }));
        if mode == Mode::Binary {
            return Access::Now(Flow::Continue);
        }
        Access::Later(Box::pin(async move {
            let decoded = match ctx.body().await {
                Ok(text) => decode_text(text),
                Err(reply) => return Flow::Respond(reply),
            };
            match decoded {
                Some(bytes) => {
                    ctx.set_body(bytes);
                    Flow::Continue
                }
                None => Flow::Respond(Reply::new(
                    StatusCode::BAD_REQUEST,
                    "the gRPC-Web text body is not base64",
                )),
            }
        }))
    }
}

impl GrpcWeb {
    /// Kong's answer to a CORS preflight.
    fn preflight(&self) -> Reply {
        let mut reply = Reply::new(StatusCode::OK, "OK");
        let h = &mut reply.headers;
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin.clone(),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type,x-grpc-web,x-user-agent"),
        );
        reply
    }
}

/// Base64 text as gRPC-Web clients send it: one or more padded segments (whitespace ignored).
fn decode_text(text: &[u8]) -> Option<Bytes> {
    let clean: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if !clean.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    for quantum in clean.chunks(4) {
        let engine = &base64::engine::general_purpose::STANDARD;
        out.extend(engine.decode(quantum).ok()?);
    }
    Some(out.into())
}

/// One request's response phases: the client's content type, and the body in its form.
struct WebResponse {
    mode: Mode,
    mimetype: HeaderValue,
}

impl Handler for WebResponse {
    fn on_response(&self) -> bool {
        true
    }

    fn header_filter(&self, response: &mut http::response::Parts) {
        response
            .headers
            .insert(header::CONTENT_TYPE, self.mimetype.clone());
        response.headers.remove(header::CONTENT_LENGTH);
    }

    fn body_stream(&self, response: &http::response::Parts) -> Option<Box<dyn FrameMap>> {
        Some(Box::new(WebFrames {
            mode: self.mode,
            head: grpc_fields(&response.headers),
            trailed: false,
        }))
    }
}

/// The gRPC-Web body of an upstream gRPC answer, frame by frame.
struct WebFrames {
    mode: Mode,
    /// A Trailers-Only answer's status, from its head: the trailer frame when none follow.
    head: Vec<(HeaderName, HeaderValue)>,
    trailed: bool,
}

impl FrameMap for WebFrames {
    fn frame(&mut self, frame: Frame<Bytes>) -> Frame<Bytes> {
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                let trailers = frame.into_trailers().unwrap_or_default();
                self.trailed = true;
                trailer_frame(&grpc_fields(&trailers))
            }
        };
        Frame::data(self.encoded(data))
    }

    fn end(&mut self) -> Option<Frame<Bytes>> {
        if self.trailed {
            return None;
        }
        self.trailed = true;
        Some(Frame::data(self.encoded(trailer_frame(&self.head))))
    }
}

impl WebFrames {
    fn encoded(&self, data: Bytes) -> Bytes {
        match self.mode {
            Mode::Binary => data,
            Mode::Text => base64::engine::general_purpose::STANDARD
                .encode(&data)
                .into(),
        }
    }
}

/// Trailer fields in gRPC-Web order: `grpc-status` (0 when absent, as Kong writes it) and
/// `grpc-message`, then the others.
fn grpc_fields(headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    let status = HeaderName::from_static("grpc-status");
    let message = HeaderName::from_static("grpc-message");
    let mut fields = vec![
        (
            status.clone(),
            headers
                .get(&status)
                .cloned()
                .unwrap_or(HeaderValue::from_static("0")),
        ),
        (
            message.clone(),
            headers
                .get(&message)
                .cloned()
                .unwrap_or(HeaderValue::from_static("")),
        ),
    ];
    if headers.contains_key(&status) {
        let rest = headers
            .iter()
            .filter(|(n, _)| **n != status && **n != message);
        fields.extend(rest.map(|(n, v)| (n.clone(), v.clone())));
    }
    fields
}

/// The trailers as gRPC-Web's last message: flag 0x80, a 4-byte length, `name:value\r\n` lines.
fn trailer_frame(fields: &[(HeaderName, HeaderValue)]) -> Bytes {
    let mut text = Vec::new();
    for (name, value) in fields {
        text.extend_from_slice(name.as_str().as_bytes());
        text.push(b':');
        text.extend_from_slice(value.as_bytes());
        text.extend_from_slice(b"\r\n");
    }
    let mut out = BytesMut::with_capacity(5 + text.len());
    out.put_u8(0x80);
    out.put_u32(text.len() as u32);
    out.extend_from_slice(&text);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    /// 01-proxy_spec.lua:13-17: the hello request and its answer, in text mode.
    #[test]
    fn a_text_answer_is_its_message_and_kongs_trailer_frame_each_base64() {
        let mut frames = WebFrames {
            mode: Mode::Text,
            head: Vec::new(),
            trailed: false,
        };
        let message = Bytes::from(decode("AAAAAAwKCmhlbGxvIGhleWE="));
        let first = frames.frame(Frame::data(message)).into_data().unwrap();
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let last = frames.frame(Frame::trailers(trailers)).into_data().unwrap();
        assert_eq!(
            [first, last].concat(),
            b"AAAAAAwKCmhlbGxvIGhleWE=gAAAAB5ncnBjLXN0YXR1czowDQpncnBjLW1lc3NhZ2U6DQo="
        );
        assert!(frames.end().is_none());
    }

    /// 01-proxy_spec.lua:12-13: the text request decodes to the binary one.
    #[test]
    fn text_bodies_decode_in_padded_segments() {
        let one = decode_text(b"AAAAAAYKBGhleWE=").unwrap();
        assert_eq!(&one[..], &decode("AAAAAAYKBGhleWE=")[..]);
        let two = decode_text(b"AAAAAAYK\r\nBGhleWE=AAAA").unwrap();
        assert_eq!(two.len(), one.len() + 3);
        assert!(decode_text(b"AAA").is_none());
        assert!(decode_text(b"AA*A").is_none());
    }

    #[test]
    fn a_trailers_only_answer_ends_with_its_heads_status() {
        let mut head = HeaderMap::new();
        head.insert("grpc-status", HeaderValue::from_static("8"));
        head.insert("grpc-message", HeaderValue::from_static("limit"));
        head.insert("x-other", HeaderValue::from_static("1"));
        let mut frames = WebFrames {
            mode: Mode::Binary,
            head: grpc_fields(&head),
            trailed: false,
        };
        let end = frames.end().unwrap().into_data().unwrap();
        let text = b"grpc-status:8\r\ngrpc-message:limit\r\nx-other:1\r\n";
        assert_eq!(&end[..5], [0x80, 0, 0, 0, text.len() as u8]);
        assert_eq!(&end[5..], text);
    }

    #[test]
    fn only_protobuf_content_types_are_carried() {
        assert_eq!(mode(b"application/grpc-web"), Some(Mode::Binary));
        assert_eq!(mode(b"application/grpc-web+proto"), Some(Mode::Binary));
        assert_eq!(mode(b"application/grpc-web-text"), Some(Mode::Text));
        assert_eq!(mode(b"application/grpc-web-text+proto"), Some(Mode::Text));
        assert_eq!(mode(b"application/grpc-web+json"), None);
        assert_eq!(mode(b"application/json"), None);
    }
}

//! A span written as OTLP protobuf (`opentelemetry.proto.trace.v1.Span`, field numbers from the
//! `opentelemetry-proto` crate's definitions) straight from a traced request's record, with
//! prost's key and varint writers. Building the crate's `Span` values first cost an allocation
//! per id, name, attribute key and value and was most of the exporter's work per request; the
//! tests decode what this writes with the crate's own types.
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};

/// `Span.SpanKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Internal = 1,
    Server = 2,
    Client = 3,
}

/// An attribute's value.
pub enum Value<'a> {
    Text(&'a str),
    /// A string written from its parts (`http://`, host, path).
    Joined([&'a str; 3]),
    Int(i64),
}

/// One span's fields.
pub struct Span<'a> {
    pub trace_id: &'a [u8; 16],
    pub span_id: &'a [u8; 8],
    pub parent_span_id: Option<&'a [u8; 8]>,
    /// The name, written from its two parts (`kong.access.plugin.` and the plugin's name).
    pub name: [&'a str; 2],
    pub kind: Kind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: &'a [(&'static str, Value<'a>)],
    /// `Status.code` ERROR.
    pub error: bool,
}

// Span's field numbers (opentelemetry/proto/trace/v1/trace.proto).
const TRACE_ID: u32 = 1;
const SPAN_ID: u32 = 2;
const PARENT_SPAN_ID: u32 = 4;
const NAME: u32 = 5;
const KIND: u32 = 6;
const START: u32 = 7;
const END: u32 = 8;
const ATTRIBUTES: u32 = 9;
const STATUS: u32 = 15;
/// `Status.code`, and its value ERROR.
const STATUS_CODE: u32 = 3;
const STATUS_ERROR: u64 = 2;
/// `KeyValue.key`, `KeyValue.value`; `AnyValue.string_value`, `AnyValue.int_value`.
const KEY: u32 = 1;
const VALUE: u32 = 2;
const STRING_VALUE: u32 = 1;
const INT_VALUE: u32 = 3;

impl Span<'_> {
    /// Appends the span to `out` as field `field` of the enclosing message (`ScopeSpans.spans`).
    pub fn write(&self, field: u32, out: &mut Vec<u8>) {
        encode_key(field, WireType::LengthDelimited, out);
        encode_varint(self.len() as u64, out);
        bytes(TRACE_ID, [&self.trace_id[..]], out);
        bytes(SPAN_ID, [&self.span_id[..]], out);
        if let Some(parent) = self.parent_span_id {
            bytes(PARENT_SPAN_ID, [&parent[..]], out);
        }
        bytes(NAME, self.name.iter().map(|p| p.as_bytes()), out);
        encode_key(KIND, WireType::Varint, out);
        encode_varint(self.kind as u64, out);
        fixed64(START, self.start_unix_nano, out);
        fixed64(END, self.end_unix_nano, out);
        for (key, value) in self.attributes {
            encode_key(ATTRIBUTES, WireType::LengthDelimited, out);
            encode_varint(attribute_len(key, value) as u64, out);
            bytes(KEY, [key.as_bytes()], out);
            encode_key(VALUE, WireType::LengthDelimited, out);
            encode_varint(value_len(value) as u64, out);
            match value {
                Value::Text(text) => bytes(STRING_VALUE, [text.as_bytes()], out),
                Value::Joined(parts) => bytes(STRING_VALUE, parts.map(str::as_bytes), out),
                Value::Int(n) => {
                    encode_key(INT_VALUE, WireType::Varint, out);
                    encode_varint(*n as u64, out);
                }
            }
        }
        if self.error {
            encode_key(STATUS, WireType::LengthDelimited, out);
            encode_varint(2, out);
            encode_key(STATUS_CODE, WireType::Varint, out);
            encode_varint(STATUS_ERROR, out);
        }
    }

    /// The encoded span's length, without its own key and length.
    fn len(&self) -> usize {
        let ids = framed(16) + framed(8) + self.parent_span_id.map_or(0, |_| framed(8));
        let name = framed(self.name.iter().map(|p| p.len()).sum());
        let kind = 1 + encoded_len_varint(self.kind as u64);
        let times = 2 * (1 + 8);
        let attributes: usize = self
            .attributes
            .iter()
            .map(|(k, v)| framed(attribute_len(k, v)))
            .sum();
        let status = if self.error { 2 + 2 } else { 0 };
        ids + name + kind + times + attributes + status
    }
}

/// A length-delimited field of `len` bytes with its key (fields under 16 take one byte).
fn framed(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

fn value_len(value: &Value) -> usize {
    match value {
        Value::Text(text) => framed(text.len()),
        Value::Joined(parts) => framed(parts.iter().map(|p| p.len()).sum()),
        Value::Int(n) => 1 + encoded_len_varint(*n as u64),
    }
}

fn attribute_len(key: &str, value: &Value) -> usize {
    framed(key.len()) + framed(value_len(value))
}

/// A length-delimited field whose bytes are the concatenation of `parts`.
fn bytes<'p, I>(field: u32, parts: I, out: &mut Vec<u8>)
where
    I: IntoIterator<Item = &'p [u8]>,
    I::IntoIter: Clone,
{
    let parts = parts.into_iter();
    encode_key(field, WireType::LengthDelimited, out);
    let len: usize = parts.clone().map(<[u8]>::len).sum();
    encode_varint(len as u64, out);
    for p in parts {
        out.extend_from_slice(p);
    }
}

fn fixed64(field: u32, n: u64, out: &mut Vec<u8>) {
    encode_key(field, WireType::SixtyFourBit, out);
    out.extend_from_slice(&n.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value;
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span as ProtoSpan};
    use prost::Message;

    #[test]
    fn spans_decode_with_the_crates_types() {
        let (trace, id, parent) = ([7u8; 16], [1u8; 8], [2u8; 8]);
        let long = "x".repeat(300);
        let attributes = [
            ("http.url", Value::Joined(["http://", "h", "/p"])),
            ("http.status_code", Value::Int(503)),
            ("negative", Value::Int(-1)),
            ("long", Value::Text(&long)),
        ];
        let spans = [
            Span {
                trace_id: &trace,
                span_id: &id,
                parent_span_id: Some(&parent),
                name: ["kong.access.plugin.", "key-auth"],
                kind: Kind::Internal,
                start_unix_nano: 1,
                end_unix_nano: u64::MAX,
                attributes: &attributes,
                error: true,
            },
            Span {
                trace_id: &trace,
                span_id: &parent,
                parent_span_id: None,
                name: ["kong", ""],
                kind: Kind::Server,
                start_unix_nano: 5,
                end_unix_nano: 6,
                attributes: &[],
                error: false,
            },
        ];
        let mut out = Vec::new();
        for s in &spans {
            s.write(2, &mut out);
        }
        let decoded = ScopeSpans::decode(out.as_slice()).unwrap();
        let [first, second]: [ProtoSpan; 2] = decoded.spans.try_into().unwrap();
        assert_eq!(first.trace_id, trace);
        assert_eq!(first.span_id, id);
        assert_eq!(first.parent_span_id, parent);
        assert_eq!(first.name, "kong.access.plugin.key-auth");
        assert_eq!(first.kind, Kind::Internal as i32);
        assert_eq!(
            (first.start_time_unix_nano, first.end_time_unix_nano),
            (1, u64::MAX)
        );
        let values: Vec<(&str, Option<any_value::Value>)> = first
            .attributes
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.clone().and_then(|v| v.value)))
            .collect();
        assert_eq!(
            values,
            [
                (
                    "http.url",
                    Some(any_value::Value::StringValue("http://h/p".into()))
                ),
                ("http.status_code", Some(any_value::Value::IntValue(503))),
                ("negative", Some(any_value::Value::IntValue(-1))),
                ("long", Some(any_value::Value::StringValue(long.clone()))),
            ]
        );
        assert_eq!(first.status.as_ref().unwrap().code, 2);
        assert_eq!((second.name.as_str(), second.kind), ("kong", 2));
        assert!(second.parent_span_id.is_empty() && second.status.is_none());
        assert_eq!(first.encoded_len(), spans[0].len());
    }
}

//! Trace context in request headers, read and written in the formats Kong's tracing
//! propagation knows (kong/observability/tracing/propagation/extractors and injectors):
//! W3C `traceparent`, Zipkin's B3 (several headers, or the single `b3`), Jaeger's
//! `uber-trace-id`, OpenTracing's `ot-tracer-*`, AWS X-Ray's `X-Amzn-Trace-Id` and Google
//! Cloud's `X-Cloud-Trace-Context`.
use http::{HeaderMap, HeaderName, HeaderValue};

/// A format's name, as the config spells it.
pub const FORMATS: &[&str] = &["w3c", "b3", "b3-single", "jaeger", "ot", "aws", "gcp"];

/// The trace a request belongs to, as its headers said it.
#[derive(Debug, Clone, PartialEq)]
pub struct Parent {
    pub trace_id: [u8; 16],
    /// The caller's span (absent from a B3 header that names only the trace).
    pub span_id: Option<[u8; 8]>,
    /// The caller's sampling decision, when it made one.
    pub sampled: Option<bool>,
    /// The format it came in.
    pub format: &'static str,
}

/// What goes into the upstream request's headers.
pub struct Outgoing {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

/// The first of `formats` that `headers` carry a valid context in.
pub fn extract(headers: &HeaderMap, formats: &[&'static str]) -> Option<Parent> {
    let found = Found::of(headers);
    formats.iter().find_map(|f| extract_one(&found, f))
}

/// The headers the formats read, in `At`'s order.
const READ: [&str; 12] = [
    "traceparent",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-sampled",
    "x-b3-flags",
    "uber-trace-id",
    "ot-tracer-traceid",
    "ot-tracer-spanid",
    "ot-tracer-sampled",
    "x-amzn-trace-id",
    "x-cloud-trace-context",
];

/// A header's place in `READ`.
#[derive(Clone, Copy)]
enum At {
    Traceparent,
    B3,
    B3TraceId,
    B3SpanId,
    B3Sampled,
    B3Flags,
    UberTraceId,
    OtTraceId,
    OtSpanId,
    OtSampled,
    AmznTraceId,
    CloudTrace,
}

/// The trace headers a request carries (the first value of each, trimmed), found in one pass
/// over its headers: a map lookup for each of the dozen names cost more than reading the few
/// headers a request has.
/// `None` for a header the request lacks; `Some(None)` for one whose first value is not text.
struct Found<'a>([Option<Option<&'a str>>; READ.len()]);

impl<'a> Found<'a> {
    fn of(headers: &'a HeaderMap) -> Found<'a> {
        let mut found = Found([None; READ.len()]);
        for (name, value) in headers {
            let Some(i) = READ.iter().position(|r| *r == name.as_str()) else {
                continue;
            };
            if found.0[i].is_none() {
                found.0[i] = Some(value.to_str().ok().map(str::trim));
            }
        }
        found
    }
}

fn text<'a>(found: &Found<'a>, at: At) -> Option<&'a str> {
    found.0[at as usize].flatten()
}

/// The headers the formats write.
static TRACEPARENT: HeaderName = HeaderName::from_static(READ[At::Traceparent as usize]);
static B3: HeaderName = HeaderName::from_static(READ[At::B3 as usize]);
static B3_TRACE_ID: HeaderName = HeaderName::from_static(READ[At::B3TraceId as usize]);
static B3_SPAN_ID: HeaderName = HeaderName::from_static(READ[At::B3SpanId as usize]);
static B3_SAMPLED: HeaderName = HeaderName::from_static(READ[At::B3Sampled as usize]);
static UBER_TRACE_ID: HeaderName = HeaderName::from_static(READ[At::UberTraceId as usize]);
static OT_TRACE_ID: HeaderName = HeaderName::from_static(READ[At::OtTraceId as usize]);
static OT_SPAN_ID: HeaderName = HeaderName::from_static(READ[At::OtSpanId as usize]);
static OT_SAMPLED: HeaderName = HeaderName::from_static(READ[At::OtSampled as usize]);
static AMZN_TRACE_ID: HeaderName = HeaderName::from_static(READ[At::AmznTraceId as usize]);
static CLOUD_TRACE: HeaderName = HeaderName::from_static(READ[At::CloudTrace as usize]);

fn extract_one(h: &Found, format: &'static str) -> Option<Parent> {
    let parent = |trace_id, span_id, sampled| Parent {
        trace_id,
        span_id,
        sampled,
        format,
    };
    match format {
        "w3c" => {
            let v = text(h, At::Traceparent)?;
            let parts: Vec<&str> = v.split('-').collect();
            let [version, trace, span, flags] = parts[..] else {
                return None;
            };
            if version.len() != 2 || version == "ff" || flags.len() != 2 {
                return None;
            }
            let flags = u8::from_str_radix(flags, 16).ok()?;
            let (trace, span) = (id16(trace, 32)?, id8(span)?);
            Some(parent(trace, Some(span), Some(flags & 1 == 1)))
        }
        "b3" | "b3-single" => extract_b3(h, format),
        "jaeger" => {
            let v = text(h, At::UberTraceId)?;
            let parts: Vec<&str> = v.split(':').collect();
            let [trace, span, _, flags] = parts[..] else {
                return None;
            };
            let flags = u8::from_str_radix(flags, 16).ok()?;
            Some(parent(
                id16(trace, 32)?,
                Some(id8_padded(span)?),
                Some(flags & 1 == 1),
            ))
        }
        "ot" => {
            let trace = id16(text(h, At::OtTraceId)?, 32)?;
            let span = id8(text(h, At::OtSpanId)?)?;
            let sampled = text(h, At::OtSampled).map(|s| s == "true" || s == "1");
            Some(parent(trace, Some(span), sampled))
        }
        "aws" => {
            let v = text(h, At::AmznTraceId)?;
            let (mut trace, mut span, mut sampled) = (None, None, None);
            for field in v.split(';') {
                match field.trim().split_once('=')? {
                    ("Root", root) => {
                        let parts: Vec<&str> = root.split('-').collect();
                        let ["1", epoch, unique] = parts[..] else {
                            return None;
                        };
                        if epoch.len() != 8 || unique.len() != 24 {
                            return None;
                        }
                        trace = id16(&format!("{epoch}{unique}"), 32);
                    }
                    ("Parent", p) => span = id8(p),
                    ("Sampled", s) => sampled = Some(s == "1"),
                    _ => {}
                }
            }
            Some(parent(trace?, Some(span?), sampled))
        }
        "gcp" => {
            let v = text(h, At::CloudTrace)?;
            let (ids, options) = v.split_once(';').unwrap_or((v, ""));
            let (trace, span) = ids.split_once('/')?;
            let span: u64 = span.parse().ok()?;
            let sampled = options.strip_prefix("o=").map(|o| o == "1");
            Some(parent(id16(trace, 32)?, Some(span.to_be_bytes()), sampled))
        }
        _ => None,
    }
}

/// B3, from the single header or the several.
fn extract_b3(h: &Found, format: &'static str) -> Option<Parent> {
    let sampled_of = |s: &str| match s {
        "1" | "d" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    };
    let parent = |trace_id, span_id, sampled| Parent {
        trace_id,
        span_id,
        sampled,
        format,
    };
    if let Some(single) = text(h, At::B3) {
        let parts: Vec<&str> = single.split('-').collect();
        return match parts[..] {
            [trace, span] => Some(parent(id16(trace, 32)?, Some(id8(span)?), None)),
            [trace, span, s, ..] => Some(parent(id16(trace, 32)?, Some(id8(span)?), sampled_of(s))),
            _ => None,
        };
    }
    let trace = id16(text(h, At::B3TraceId)?, 32)?;
    let span = text(h, At::B3SpanId).and_then(id8);
    let debug = text(h, At::B3Flags) == Some("1");
    let sampled = if debug {
        Some(true)
    } else {
        text(h, At::B3Sampled).and_then(sampled_of)
    };
    Some(parent(trace, span, sampled))
}

/// A trace id of 16 or 32 hex digits (a 64-bit one is zero-padded on the left); not all zero.
fn id16(hex: &str, width: usize) -> Option<[u8; 16]> {
    if hex.len() != width && hex.len() != 16 {
        return None;
    }
    let padded = format!("{hex:0>32}");
    let n = u128::from_str_radix(&padded, 16).ok()?;
    (n != 0).then(|| n.to_be_bytes())
}

/// A span id of 16 hex digits, not all zero.
fn id8(hex: &str) -> Option<[u8; 8]> {
    if hex.len() != 16 {
        return None;
    }
    id8_padded(hex)
}

/// A span id of at most 16 hex digits (Jaeger drops leading zeros), not all zero.
fn id8_padded(hex: &str) -> Option<[u8; 8]> {
    if hex.is_empty() || hex.len() > 16 {
        return None;
    }
    let n = u64::from_str_radix(hex, 16).ok()?;
    (n != 0).then(|| n.to_be_bytes())
}

pub use crate::hex::encode as hex;

/// The headers that say `out` in `format`, each value written once into its own buffer.
pub fn inject(format: &str, out: &Outgoing) -> Vec<(HeaderName, HeaderValue)> {
    use Piece::{Hex, Text};
    let (trace, span) = (&out.trace_id[..], &out.span_id[..]);
    let flag = if out.sampled { "1" } else { "0" };
    let one = |name: &HeaderName, pieces: &[Piece]| vec![(name.clone(), value(pieces))];
    match format {
        "w3c" => one(
            &TRACEPARENT,
            &[
                Text("00-"),
                Hex(trace),
                Text("-"),
                Hex(span),
                Text("-0"),
                Text(flag),
            ],
        ),
        "b3" => vec![
            (B3_TRACE_ID.clone(), value(&[Hex(trace)])),
            (B3_SPAN_ID.clone(), value(&[Hex(span)])),
            (B3_SAMPLED.clone(), value(&[Text(flag)])),
        ],
        "b3-single" => one(
            &B3,
            &[Hex(trace), Text("-"), Hex(span), Text("-"), Text(flag)],
        ),
        "jaeger" => one(
            &UBER_TRACE_ID,
            &[Hex(trace), Text(":"), Hex(span), Text(":0:"), Text(flag)],
        ),
        "ot" => vec![
            (OT_TRACE_ID.clone(), value(&[Hex(trace)])),
            (OT_SPAN_ID.clone(), value(&[Hex(span)])),
            (
                OT_SAMPLED.clone(),
                value(&[Text(if out.sampled { "true" } else { "false" })]),
            ),
        ],
        "aws" => one(
            &AMZN_TRACE_ID,
            &[
                Text("Root=1-"),
                Hex(&trace[..4]),
                Text("-"),
                Hex(&trace[4..]),
                Text(";Parent="),
                Hex(span),
                Text(";Sampled="),
                Text(flag),
            ],
        ),
        "gcp" => {
            let span = u64::from_be_bytes(out.span_id).to_string();
            one(
                &CLOUD_TRACE,
                &[Hex(trace), Text("/"), Text(&span), Text(";o="), Text(flag)],
            )
        }
        _ => Vec::new(),
    }
}

/// Part of a header value: text as it is, or bytes in lowercase hex.
enum Piece<'a> {
    Text(&'a str),
    Hex(&'a [u8]),
}

/// The pieces as one header value (hex digits and the formats' punctuation are all valid).
fn value(pieces: &[Piece]) -> HeaderValue {
    let mut text = String::with_capacity(64);
    for p in pieces {
        match p {
            Piece::Text(t) => text.push_str(t),
            Piece::Hex(bytes) => crate::hex::encode_into(bytes, &mut text),
        }
    }
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text)).expect("hex digits and punctuation")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(
                HeaderName::try_from(*n).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const SPAN: &str = "b7ad6b7169203331";

    fn out() -> Outgoing {
        Outgoing {
            trace_id: id16(TRACE, 32).unwrap(),
            span_id: id8(SPAN).unwrap(),
            sampled: true,
        }
    }

    // spec/03-plugins/37-opentelemetry/03-propagation_spec.lua: each format read back from
    // what it writes, and Kong's examples.
    #[test]
    fn every_format_reads_back_what_it_writes() {
        for format in FORMATS {
            let written: HeaderMap = inject(format, &out()).into_iter().collect();
            let read = extract(&written, &[*format]).unwrap_or_else(|| panic!("{format}"));
            assert_eq!(hex(&read.trace_id), TRACE, "{format}");
            assert_eq!(
                read.span_id.map(|s| hex(&s)).as_deref(),
                Some(SPAN),
                "{format}"
            );
            assert_eq!(read.sampled, Some(true), "{format}");
        }
    }

    #[test]
    fn headers_from_other_tracers_are_read() {
        let w3c = headers(&[("traceparent", &format!("00-{TRACE}-{SPAN}-00"))]);
        let p = extract(&w3c, &["b3", "w3c"]).unwrap();
        assert_eq!((p.format, p.sampled), ("w3c", Some(false)));
        let b3 = headers(&[
            ("x-b3-traceid", "80f198ee56343ba8"),
            ("x-b3-spanid", SPAN),
            ("x-b3-flags", "1"),
        ]);
        let p = extract(&b3, &["b3"]).unwrap();
        assert_eq!(hex(&p.trace_id), "000000000000000080f198ee56343ba8");
        assert_eq!(p.sampled, Some(true));
        let jaeger = headers(&[("uber-trace-id", &format!("{TRACE}:a9:0:1"))]);
        let p = extract(&jaeger, &["jaeger"]).unwrap();
        assert_eq!(hex(&p.span_id.unwrap()), "00000000000000a9");
        let aws = headers(&[(
            "x-amzn-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )]);
        let p = extract(&aws, &["aws"]).unwrap();
        assert_eq!(hex(&p.trace_id), "5759e988bd862e3fe1be46a994272793");
        let gcp = headers(&[("x-cloud-trace-context", &format!("{TRACE}/123;o=1"))]);
        let p = extract(&gcp, &["gcp"]).unwrap();
        assert_eq!(u64::from_be_bytes(p.span_id.unwrap()), 123);
        for bad in [
            format!("00-{}-{SPAN}-01", "0".repeat(32)),
            format!("ff-{TRACE}-{SPAN}-01"),
            format!("00-{TRACE}-{SPAN}"),
            format!("00-{TRACE}-xyz-01"),
        ] {
            assert_eq!(
                extract(&headers(&[("traceparent", &bad)]), &["w3c"]),
                None,
                "{bad}"
            );
        }
        assert_eq!(extract(&w3c, &[]), None);
    }

    /// As a map lookup reads them: a header's first value counts, and a first value that is
    /// not text hides the later ones.
    #[test]
    fn the_first_value_of_each_header_is_read() {
        let mut h = HeaderMap::new();
        h.append(
            "traceparent",
            HeaderValue::from_str(&format!("00-{TRACE}-{SPAN}-01")).unwrap(),
        );
        h.append("traceparent", HeaderValue::from_static("00-bad-bad-01"));
        assert_eq!(hex(&extract(&h, &["w3c"]).unwrap().trace_id), TRACE);
        let mut h = HeaderMap::new();
        h.append("uber-trace-id", HeaderValue::from_bytes(b"\xff").unwrap());
        h.append(
            "uber-trace-id",
            HeaderValue::from_str(&format!("{TRACE}:a9:0:1")).unwrap(),
        );
        assert_eq!(extract(&h, &["jaeger"]), None);
    }
}

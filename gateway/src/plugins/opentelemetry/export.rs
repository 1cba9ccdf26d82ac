//! Spans out: a batch of traced requests (`Record`s, queued by the log phase) written as OTLP
//! protobuf spans (`wire`) under the resource and scope (the `opentelemetry-proto` crate's
//! types, encoded once) in the exporter's own task, off the request path, and sent to `traces_endpoint` over OTLP/HTTP
//! (`POST`, `Content-Type: application/x-protobuf`) as one `ExportTraceServiceRequest`.
use crate::plugins::log_queue::{self, Deliver};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// An attribute with a string value.
pub fn text(key: &str, value: impl Into<String>) -> KeyValue {
    attribute(key, any_value::Value::StringValue(value.into()))
}

/// An attribute with an integer value.
pub fn int(key: &str, value: i64) -> KeyValue {
    attribute(key, any_value::Value::IntValue(value))
}

fn attribute(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// The parts every export request repeats, encoded once: `ResourceSpans.resource` and
/// `ScopeSpans.scope`, each with its field key and length.
pub struct Frame {
    resource: Vec<u8>,
    scope: Vec<u8>,
}

impl Frame {
    pub fn new(attributes: Vec<KeyValue>) -> Frame {
        let resource = ResourceSpans {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            ..Default::default()
        };
        let scope = ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "tollgate".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        Frame {
            resource: resource.encode_to_vec(),
            scope: scope.encode_to_vec(),
        }
    }

    /// One encoded `ExportTraceServiceRequest` whose spans `write_spans` writes (as
    /// `ScopeSpans.spans` fields; about `capacity` bytes). The spans are written once, into
    /// the body itself: room is left in front for the enclosing messages' keys and lengths (at
    /// most 11 bytes each), which are known once the spans are written.
    pub fn request(&self, capacity: usize, write_spans: impl FnOnce(&mut Vec<u8>)) -> Bytes {
        let room = 2 * 11 + self.resource.len() + self.scope.len();
        let mut out = Vec::with_capacity(room + capacity);
        out.resize(room, 0);
        write_spans(&mut out);
        let scope_spans = self.scope.len() + (out.len() - room);
        let resource_spans = self.resource.len() + framed_len(scope_spans);
        let mut head = Vec::with_capacity(room);
        encode_key(1, WireType::LengthDelimited, &mut head);
        encode_varint(resource_spans as u64, &mut head);
        head.extend_from_slice(&self.resource);
        encode_key(2, WireType::LengthDelimited, &mut head);
        encode_varint(scope_spans as u64, &mut head);
        head.extend_from_slice(&self.scope);
        let start = room - head.len();
        out[start..room].copy_from_slice(&head);
        Bytes::from(out).slice(start..)
    }
}

/// A length-delimited field's size: its key (one byte for fields 1 and 2), length and body.
fn framed_len(body: usize) -> usize {
    1 + encoded_len_varint(body as u64) + body
}

/// Sends batches to one OTLP/HTTP endpoint.
pub struct Exporter {
    client: log_queue::HttpsClient,
    uri: Uri,
    headers: HeaderMap,
    frame: Frame,
    timeout: Duration,
}

impl Exporter {
    pub fn new(
        uri: Uri,
        mut headers: HeaderMap,
        resource: Vec<KeyValue>,
        (connect, whole): (Duration, Duration),
    ) -> Exporter {
        let client = log_queue::https_client(connect, Duration::from_secs(60));
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        Exporter {
            client,
            uri,
            headers,
            frame: Frame::new(resource),
            timeout: whole,
        }
    }
}

impl Deliver<super::Record> for Exporter {
    fn deliver<'a>(
        &'a mut self,
        batch: &'a [super::Record],
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            let capacity = batch.iter().map(log_queue::Entry::size).sum();
            let body = self.frame.request(capacity, |out| {
                for record in batch {
                    record.write(out);
                }
            });
            let mut req = Request::new(Full::new(body));
            *req.method_mut() = Method::POST;
            *req.uri_mut() = self.uri.clone();
            *req.headers_mut() = self.headers.clone();
            let exchange = async {
                let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
                let status = resp.status();
                let _ = Limited::new(resp.into_body(), 4096).collect().await;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("{} answered {status}", self.uri))
                }
            };
            tokio::time::timeout(self.timeout, exchange)
                .await
                .map_err(|_| format!("{} did not answer in time", self.uri))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::Span;

    #[test]
    fn spans_of_several_requests_make_one_export_request() {
        let span = |name: &str| Span {
            name: name.into(),
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            ..Default::default()
        };
        let frame = Frame::new(vec![text("service.name", "kong")]);
        let spans = [span("kong"), span("kong.balancer"), span("kong")];
        let body = frame.request(0, |out| {
            for span in spans {
                encode_key(2, WireType::LengthDelimited, out);
                span.encode_length_delimited(out).unwrap();
            }
        });
        let decoded = ExportTraceServiceRequest::decode(body).unwrap();
        let rs = &decoded.resource_spans[0];
        assert_eq!(
            rs.resource.as_ref().unwrap().attributes[0].key,
            "service.name"
        );
        let scope = &rs.scope_spans[0];
        assert_eq!(scope.scope.as_ref().unwrap().name, "tollgate");
        let names: Vec<&str> = scope.spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["kong", "kong.balancer", "kong"]);
    }
}

//! A response as the cache keeps it, and its two written forms: Kong's JSON shape, which the
//! admin API's lookups answer with, and the one the `redis` strategy stores (the same, with
//! the body in base64 so any bytes survive).
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::{json, Map, Value};

/// Kong's `CACHE_VERSION`: an entry of another version is purged, not served.
pub const VERSION: u64 = 1;

#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    pub status: StatusCode,
    /// The response's headers, less hop-by-hop ones and the cache's own.
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When it was stored, in Unix seconds.
    pub timestamp: u64,
    /// How many seconds it is fresh for.
    pub ttl: u64,
}

impl Cached {
    /// What it takes in a store, roughly: body, headers and the bookkeeping around them.
    pub fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        self.body.len() + headers + 128
    }

    /// Kong's shape (the admin API's `GET /proxy-cache/...`): the body as text.
    pub fn describe(&self) -> Value {
        let mut v = self.fields();
        v["body"] = Value::String(String::from_utf8_lossy(&self.body).into_owned());
        v
    }

    /// The form the `redis` strategy stores.
    pub fn encode(&self) -> String {
        let mut v = self.fields();
        v["body"] = Value::String(base64::engine::general_purpose::STANDARD.encode(&self.body));
        v.to_string()
    }

    /// An entry `encode` wrote; `None` for anything else (another version included).
    pub fn decode(text: &[u8]) -> Option<Cached> {
        let v: Value = serde_json::from_slice(text).ok()?;
        if v["version"].as_u64() != Some(VERSION) {
            return None;
        }
        let body = base64::engine::general_purpose::STANDARD
            .decode(v["body"].as_str()?)
            .ok()?;
        let mut headers = HeaderMap::new();
        for (name, values) in v["headers"].as_object()? {
            let name = HeaderName::try_from(name.as_str()).ok()?;
            for value in values.as_array()? {
                let value = HeaderValue::from_str(value.as_str()?).ok()?;
                headers.append(name.clone(), value);
            }
        }
        Some(Cached {
            status: StatusCode::from_u16(u16::try_from(v["status"].as_u64()?).ok()?).ok()?,
            headers,
            body: Bytes::from(body),
            timestamp: v["timestamp"].as_u64()?,
            ttl: v["ttl"].as_u64()?,
        })
    }

    fn fields(&self) -> Value {
        let mut headers: Map<String, Value> = Map::new();
        for (name, value) in &self.headers {
            let values = headers
                .entry(name.as_str())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let (Value::Array(list), Ok(text)) = (values, value.to_str()) {
                list.push(Value::String(text.to_string()));
            }
        }
        json!({
            "status": self.status.as_u16(),
            "headers": headers,
            "body": "",
            "body_len": self.body.len(),
            "timestamp": self.timestamp,
            "ttl": self.ttl,
            "version": VERSION,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_survives_the_redis_form_and_is_described_in_kongs_shape() {
        let mut headers = HeaderMap::new();
        headers.append("content-type", HeaderValue::from_static("text/plain"));
        headers.append("set-cookie", HeaderValue::from_static("a=1"));
        headers.append("set-cookie", HeaderValue::from_static("b=2"));
        let cached = Cached {
            status: StatusCode::NOT_FOUND,
            headers,
            body: Bytes::from_static(b"\xff\x00binary"),
            timestamp: 1_800_000_000,
            ttl: 300,
        };
        assert_eq!(
            Cached::decode(cached.encode().as_bytes()),
            Some(cached.clone())
        );
        let d = cached.describe();
        assert_eq!(d["status"], 404);
        assert_eq!(d["body_len"], 8);
        assert_eq!(d["headers"]["set-cookie"], json!(["a=1", "b=2"]));
        assert_eq!(d["version"], 1);
        assert_eq!(Cached::decode(b"{\"version\": 2}"), None);
        assert_eq!(Cached::decode(b"not json"), None);
    }
}

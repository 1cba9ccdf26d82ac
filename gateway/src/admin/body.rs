//! Request bodies as Kong's admin API takes them: JSON, url-encoded forms and multipart forms,
//! with dotted and indexed keys (`config.second=4`, `paths[]=/api`, `config.key_names[1]=k`).
use super::error::ApiError;
use crate::model::Source;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header::CONTENT_TYPE;
use serde_json::{Map, Value};

/// A parsed body and how strictly its values are typed.
pub struct EntityInput {
    pub fields: Map<String, Value>,
    pub source: Source,
}

impl EntityInput {
    /// Whether the fields came as form strings, which the schema coerces (`config.second=4`).
    pub fn is_form(&self) -> bool {
        self.source == Source::Form
    }
}

impl<S: Send + Sync> FromRequest<S> for EntityInput {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ct = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if ct.starts_with("multipart/form-data") {
            return Ok(EntityInput {
                fields: form_to_object(multipart_pairs(req, state).await?)?,
                source: Source::Form,
            });
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let blank = bytes.iter().all(u8::is_ascii_whitespace);
        if ct.starts_with("application/x-www-form-urlencoded") {
            let pairs = form_urlencoded::parse(&bytes).into_owned().collect();
            return Ok(EntityInput {
                fields: form_to_object(pairs)?,
                source: Source::Form,
            });
        }
        if ct.starts_with("application/json") {
            return match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(fields)) => Ok(EntityInput {
                    fields,
                    source: Source::Typed,
                }),
                _ => Err(ApiError::BadRequest("Cannot parse JSON body".into())),
            };
        }
        // Kong (api_helpers.lua, `before_filter`): a body of any other type, or of no type, is
        // 415; no body at all is an empty entity.
        if blank {
            return Ok(EntityInput {
                fields: Map::new(),
                source: Source::Typed,
            });
        }
        Err(ApiError::UnsupportedMediaType)
    }
}

/// A multipart body's fields as (name, text) pairs.
pub async fn multipart_pairs<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<Vec<(String, String)>, ApiError> {
    let mut mp = Multipart::from_request(req, state)
        .await
        .map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let mut pairs = Vec::new();
    while let Some(field) = mp
        .next_field()
        .await
        .map_err(|e| ApiError::BadRequest(e.body_text()))?
    {
        let name = field.name().unwrap_or_default().to_string();
        let text = field
            .text()
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        pairs.push((name, text));
    }
    Ok(pairs)
}

/// Builds a nested object from form pairs. `a.b=1` nests, `a[]=x` appends, `a[2]=x` keys by
/// index (turned into an array by the schema), and a repeated plain key becomes an array.
pub fn form_to_object(pairs: Vec<(String, String)>) -> Result<Map<String, Value>, ApiError> {
    let mut root = Map::new();
    for (key, value) in pairs {
        let mut segments: Vec<String> = Vec::new();
        for part in key.split('.') {
            let (name, rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            segments.push(name.to_string());
            for idx in rest.split('[').skip(1) {
                segments.push(format!("[{}", idx.trim_end_matches(']')));
            }
        }
        if segments.iter().any(|s| s.is_empty()) {
            return Err(ApiError::BadRequest(format!("invalid form key: {key}")));
        }
        insert_path(&mut root, &segments, Value::String(value));
    }
    Ok(root)
}

fn insert_path(obj: &mut Map<String, Value>, path: &[String], value: Value) {
    let (head, tail) = (&path[0], &path[1..]);
    if tail.is_empty() {
        match obj.get_mut(head) {
            Some(Value::Array(a)) => a.push(value),
            Some(existing) => {
                let prev = existing.take();
                *existing = Value::Array(vec![prev, value]);
            }
            None => {
                obj.insert(head.clone(), value);
            }
        }
        return;
    }
    let next = &tail[0];
    if next == "[" {
        // `a[]=x`: append to an array.
        let entry = obj
            .entry(head.clone())
            .or_insert_with(|| Value::Array(vec![]));
        if !entry.is_array() {
            *entry = Value::Array(vec![entry.take()]);
        }
        if let Value::Array(a) = entry {
            a.push(value);
        }
        return;
    }
    let entry = obj
        .entry(head.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    if let Value::Object(inner) = entry {
        let key = next.strip_prefix('[').unwrap_or(next).to_string();
        let mut rest = vec![key];
        rest.extend_from_slice(&tail[1..]);
        insert_path(inner, &rest, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form(s: &str) -> Value {
        let pairs = form_urlencoded::parse(s.as_bytes()).into_owned().collect();
        Value::Object(form_to_object(pairs).unwrap())
    }

    #[test]
    fn seed_rate_limit_form() {
        assert_eq!(
            form("name=rate-limiting&config.second=4&config.hour=1200&config.policy=local&consumer.id=c1&route.id=r1"),
            json!({"name": "rate-limiting", "config": {"second": "4", "hour": "1200", "policy": "local"},
                   "consumer": {"id": "c1"}, "route": {"id": "r1"}})
        );
    }

    #[test]
    fn arrays_in_every_spelling() {
        assert_eq!(
            form("paths[]=/a&paths[]=/b"),
            json!({"paths": ["/a", "/b"]})
        );
        assert_eq!(form("paths=/a&paths=/b"), json!({"paths": ["/a", "/b"]}));
        assert_eq!(
            form("config.key_names[1]=apikey"),
            json!({"config": {"key_names": {"1": "apikey"}}})
        );
        assert_eq!(form("headers.x-v[]=1"), json!({"headers": {"x-v": ["1"]}}));
    }
}

//! Request bodies plugins can read and change: form-urlencoded and JSON objects, as Kong's
//! `kong.request.get_body()` reads them. Other content types are opaque.
use bytes::Bytes;
use serde_json::{Map, Value};

/// A parsed body.
pub enum FormBody {
    Form(Vec<(String, String)>),
    Json(Map<String, Value>),
}

/// What a body holds under one name.
pub enum Field {
    Missing,
    One(String),
    /// Sent more than once, or not as a single string.
    Ambiguous,
}

impl FormBody {
    /// Parses `bytes` by `content_type`; `None` for other types and bodies that do not parse.
    pub fn parse(content_type: Option<&str>, bytes: &[u8]) -> Option<FormBody> {
        let mime = content_type?.split(';').next()?.trim().to_ascii_lowercase();
        match mime.as_str() {
            "application/x-www-form-urlencoded" => Some(FormBody::Form(
                form_urlencoded::parse(bytes).into_owned().collect(),
            )),
            "application/json" => match serde_json::from_slice(bytes) {
                Ok(Value::Object(m)) => Some(FormBody::Json(m)),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn field(&self, name: &str) -> Field {
        match self {
            FormBody::Form(pairs) => {
                let mut values = pairs.iter().filter(|(k, _)| k == name);
                match (values.next(), values.next()) {
                    (None, _) => Field::Missing,
                    (Some((_, v)), None) => Field::One(v.clone()),
                    _ => Field::Ambiguous,
                }
            }
            FormBody::Json(m) => match m.get(name) {
                None | Some(Value::Null) => Field::Missing,
                Some(Value::String(s)) => Field::One(s.clone()),
                Some(_) => Field::Ambiguous,
            },
        }
    }

    /// The body without `name`, encoded as it came.
    pub fn without(self, name: &str) -> Bytes {
        match self {
            FormBody::Form(pairs) => form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs.iter().filter(|(k, _)| k != name))
                .finish()
                .into(),
            FormBody::Json(mut m) => {
                m.remove(name);
                Value::Object(m).to_string().into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_json_objects_are_read_and_rewritten() {
        let form = FormBody::parse(
            Some("application/x-www-form-urlencoded; charset=utf-8"),
            b"apikey=k%201&a=1",
        )
        .unwrap();
        assert!(matches!(form.field("apikey"), Field::One(ref k) if k == "k 1"));
        assert_eq!(form.without("apikey"), Bytes::from("a=1"));
        let json = FormBody::parse(Some("application/json"), br#"{"apikey":"k","n":[1]}"#).unwrap();
        assert!(matches!(json.field("apikey"), Field::One(ref k) if k == "k"));
        assert!(matches!(json.field("n"), Field::Ambiguous));
        assert_eq!(json.without("apikey"), Bytes::from(r#"{"n":[1]}"#));
    }

    #[test]
    fn twice_sent_fields_and_other_types_are_not_read() {
        let form = FormBody::parse(Some("application/x-www-form-urlencoded"), b"k=1&k=2").unwrap();
        assert!(matches!(form.field("k"), Field::Ambiguous));
        assert!(FormBody::parse(Some("text/plain"), b"k=1").is_none());
        assert!(FormBody::parse(Some("application/json"), b"[1]").is_none());
        assert!(FormBody::parse(None, b"k=1").is_none());
    }
}

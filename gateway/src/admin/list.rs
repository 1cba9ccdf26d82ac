//! Entity lists as Kong pages them (kong/api/endpoints.lua and kong/db/dao/init.lua): `size`
//! (1 to 1000, default 100), an opaque base64 `offset`, `tags` filters (`a,b` all of them,
//! `a/b` any; ignored on nested lists, as Kong does), `/consumers?custom_id=`, and Kong's
//! error bodies for each (codes 7 invalid offset, 9 invalid size, 11 invalid options).
use super::error::ApiError;
use super::AdminState;
use crate::model::Kind;
use crate::store::ListQuery;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde_json::{json, Value};
use uuid::Uuid;

const DEFAULT_SIZE: usize = 100;
const MAX_SIZE: usize = 1000;

/// A list request's parameters, read from its raw query string.
struct Params {
    size: usize,
    size_given: bool,
    offset: Option<Uuid>,
    tags: Option<String>,
    custom_id: Option<String>,
}

fn invalid(code: u16, name: &'static str, message: String) -> ApiError {
    ApiError::Invalid {
        code,
        name,
        message,
        fields: None,
    }
}

impl Params {
    fn parse(query: Option<&str>, nested: bool) -> Result<Params, ApiError> {
        let mut p = Params {
            size: DEFAULT_SIZE,
            size_given: false,
            offset: None,
            tags: None,
            custom_id: None,
        };
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "size" => {
                    p.size = parse_size(&value)?;
                    p.size_given = true;
                }
                "offset" => p.offset = Some(decode_offset(&value)?),
                "tags" if !nested => p.tags = Some(check_tags(&value)?),
                "custom_id" => p.custom_id = Some(value.into_owned()),
                _ => {}
            }
        }
        Ok(p)
    }
}

/// A list's `size` and `offset` alone (lists that are not entities: `/oauth2_tokens`).
pub(super) fn size_and_offset(query: Option<&str>) -> Result<(usize, Option<Uuid>), ApiError> {
    let p = Params::parse(query, true)?;
    Ok((p.size, p.offset))
}

fn parse_size(value: &str) -> Result<usize, ApiError> {
    let n: f64 = value
        .trim()
        .parse()
        .map_err(|_| invalid(9, "invalid size", "size must be a number".into()))?;
    if n.fract() != 0.0 || n < 1.0 || n > MAX_SIZE as f64 {
        let message = format!("size must be an integer between 1 and {MAX_SIZE}");
        return Err(invalid(9, "invalid size", message));
    }
    Ok(n as usize)
}

/// Offsets are the last id of the page before, base64-encoded (opaque to clients, as Kong's;
/// the URL-safe alphabet, so an offset pasted unescaped into a query survives).
pub(super) fn encode_offset(id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
}

fn decode_offset(value: &str) -> Result<Uuid, ApiError> {
    let bad = |why: &str| {
        let suffix = if why.is_empty() {
            String::new()
        } else {
            format!(": {why}")
        };
        invalid(
            7,
            "invalid offset",
            format!("'{value}' is not a valid offset{suffix}"),
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| bad("bad base64 encoding"))?;
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| bad(""))
}

/// Kong's `tags` checks (14-tags_spec.lua): not empty, not a mix of `,` and `/`, valid UTF-8
/// (a lossy decode leaves U+FFFD where it was not).
fn check_tags(value: &str) -> Result<String, ApiError> {
    let option = |why: &str| ApiError::Invalid {
        code: 11,
        name: "invalid options",
        message: format!("invalid option (tags: {why})"),
        fields: Some(json!({"tags": why})),
    };
    if value.is_empty() {
        return Err(option("cannot be null"));
    }
    if (value.contains(',') && value.contains('/')) || value.contains('\u{FFFD}') {
        return Err(option("invalid filter syntax"));
    }
    Ok(value.to_string())
}

/// One page of `kind` (under `parent` when given), answered as Kong does: `data`, `next`
/// (the path of the next page, or null) and, when there is one, `offset`.
pub async fn answer(
    st: &AdminState,
    kind: Kind,
    parent: Option<(&'static str, Uuid)>,
    query: Option<&str>,
    base: &str,
) -> Result<Response, ApiError> {
    let p = Params::parse(query, parent.is_some())?;
    if kind == Kind::Consumer {
        if let Some(custom_id) = &p.custom_id {
            return by_custom_id(st, custom_id).await;
        }
    }
    let (tags, any_tag) = match &p.tags {
        Some(t) if t.contains('/') => (t.split('/').map(String::from).collect(), true),
        Some(t) => (t.split(',').map(String::from).collect(), false),
        None => (vec![], false),
    };
    let list = ListQuery {
        size: p.size,
        offset: p.offset.map(|o| o.to_string()),
        parent,
        tags,
        any_tag,
    };
    let mut page = st.store().list(kind, &list).await?;
    let now = crate::model::unix_now();
    let mut shown = Vec::with_capacity(page.data.len());
    for body in std::mem::take(&mut page.data) {
        shown.extend(super::entities::read(st, kind, body, now).await?);
    }
    page.data = shown;
    let offset = page.next_offset.as_deref().map(encode_offset);
    let next = offset.as_ref().map(|o| {
        let mut qs = form_urlencoded::Serializer::new(String::new());
        qs.append_pair("offset", o);
        if let Some(t) = &p.tags {
            qs.append_pair("tags", t);
        }
        if p.size_given {
            qs.append_pair("size", &p.size.to_string());
        }
        format!("{base}?{}", qs.finish())
    });
    let mut body = json!({"data": page.data, "next": next});
    if let Some(o) = offset {
        body["offset"] = Value::String(o);
    }
    Ok(Json(body).into_response())
}

/// `/consumers?custom_id=x` (kong/api/routes/consumers.lua): the one consumer with it, or none.
async fn by_custom_id(st: &AdminState, custom_id: &str) -> Result<Response, ApiError> {
    if custom_id.is_empty() {
        return Err(ApiError::BadRequest(
            "custom_id must be an unempty string".into(),
        ));
    }
    let found = st
        .store()
        .find_by_alt_key(Kind::Consumer, custom_id)
        .await?;
    Ok(Json(json!({"data": found.into_iter().collect::<Vec<_>>(), "next": null})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(query: &str) -> String {
        match Params::parse(Some(query), false) {
            Err(ApiError::Invalid { code, message, .. }) => format!("{code} {message}"),
            Err(other) => format!("{other:?}"),
            Ok(_) => "ok".into(),
        }
    }

    /// 15-off_spec.lua:133-153, 14-tags_spec.lua:76-157, kong/db/dao/init.lua (sizes).
    #[test]
    fn kongs_list_errors() {
        assert_eq!(
            error_of("offset=x"),
            "7 'x' is not a valid offset: bad base64 encoding"
        );
        assert_eq!(
            error_of("offset=%7Cpotato%7C"),
            "7 '|potato|' is not a valid offset: bad base64 encoding"
        );
        assert_eq!(
            error_of("size=0"),
            "9 size must be an integer between 1 and 1000"
        );
        assert_eq!(
            error_of("size=1001"),
            "9 size must be an integer between 1 and 1000"
        );
        assert_eq!(error_of("size=abc"), "9 size must be a number");
        assert_eq!(
            error_of("tags="),
            "11 invalid option (tags: cannot be null)"
        );
        assert_eq!(
            error_of("tags=a,b/c"),
            "11 invalid option (tags: invalid filter syntax)"
        );
        assert_eq!(
            error_of("tags=%FF"),
            "11 invalid option (tags: invalid filter syntax)"
        );
        assert_eq!(error_of("tags=a,b&size=3&foo=bar"), "ok");
        let id = Uuid::new_v4();
        let p = Params::parse(
            Some(&format!("offset={}", encode_offset(&id.to_string()))),
            false,
        );
        assert_eq!(p.unwrap().offset, Some(id));
        assert!(
            Params::parse(Some("tags="), true).is_ok(),
            "nested lists ignore tags"
        );
    }
}

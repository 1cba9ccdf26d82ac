//! Kong's `/config` endpoint for DB-less mode (kong/api/routes/config.lua): `POST` takes a
//! whole declarative configuration (a JSON body, a raw YAML or JSON body, or the text under a
//! `config` field of a JSON, form or multipart body, as `curl -F config=@kong.yaml` sends it),
//! validates it like the declarative file, and swaps it in as one transaction; `GET` returns
//! the running one. With a database, both answer 400 as Kong's do: there the store is the
//! source of truth and `tollgate config apply` syncs a file into it.
use super::body::{form_to_object, multipart_pairs};
use super::declarative_errors;
use super::error::ApiError;
use super::AdminState;
use crate::declarative::{self, export};
use crate::model::unix_now;
use axum::body::Bytes;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{header::CONTENT_TYPE, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// Declarative configurations are larger than entity bodies: as large as a file may be.
pub const MAX_CONFIG_BYTES: usize = declarative::yaml::MAX_DOCUMENT_BYTES;

fn db_mode() -> Response {
    let message =
        "this endpoint is only available when Tollgate is configured to not use a database";
    (StatusCode::BAD_REQUEST, Json(json!({"message": message}))).into_response()
}

/// `GET /config`: `{"config": "<the running configuration as YAML>"}`.
pub async fn get(State(st): State<Arc<AdminState>>) -> Result<Response, ApiError> {
    if !st.read_only {
        return Ok(db_mode());
    }
    let store = st.store();
    let doc = export::document(&store.load_all().await?, &store.plans().await?);
    Ok(Json(json!({"config": export::to_yaml(&doc)})).into_response())
}

/// `POST /config[?check_hash=1][&flatten_errors=1]`: 201 with the entities loaded, 304 when
/// `check_hash` finds the running configuration identical, 400 in Kong's shapes otherwise.
pub async fn post(
    State(st): State<Arc<AdminState>>,
    Query(query): Query<HashMap<String, String>>,
    req: Request,
) -> Result<Response, ApiError> {
    if !st.read_only {
        return Ok(db_mode());
    }
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let (mut params, raw) = read_body(&content_type, req).await?;
    for (k, v) in query {
        params.entry(k).or_insert(Value::String(v));
    }
    let flatten = truthy(params.get("flatten_errors"));
    let check_hash = params.get("check_hash").and_then(Value::as_str) == Some("1");
    let Some(text) = config_text(&params, raw) else {
        let message = json!({"message": "expected a declarative configuration"});
        return Ok((StatusCode::BAD_REQUEST, Json(message)).into_response());
    };
    let parsed = declarative::yaml::parse(&text).ok().map(|l| l.value);
    let hash: Option<[u8; 32]> = parsed
        .as_ref()
        .map(|doc| Sha256::digest(doc.to_string()).into());
    // Held until the new configuration is in: posts are applied one at a time, in order.
    let mut last = st.config_hash.lock().await;
    if check_hash && hash.is_some() && hash == *last {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let config = match declarative::load(&text, unix_now()) {
        Ok(c) => c,
        Err(diagnostics) => {
            let body = declarative_errors::body(&diagnostics, parsed.as_ref(), flatten);
            return Ok((StatusCode::BAD_REQUEST, Json(body)).into_response());
        }
    };
    st.store()
        .replace_all(&config.records, &config.plans)
        .await?;
    *last = hash;
    drop(last);
    st.reloader.poke();
    let mut loaded: Map<String, Value> = Map::new();
    for plan in &config.plans {
        let section = loaded
            .entry("plans")
            .or_insert_with(|| Value::Object(Map::new()));
        section[plan.id.clone()] = serde_json::to_value(plan).expect("plans serialize");
    }
    for rec in &config.records {
        let section = loaded
            .entry(rec.kind.schema_name())
            .or_insert_with(|| Value::Object(Map::new()));
        section[rec.id.to_string()] = rec.body.clone();
    }
    Ok((StatusCode::CREATED, Json(Value::Object(loaded))).into_response())
}

/// The body's fields (a form, a multipart form or a JSON object; none otherwise) and, for
/// a body that is not a form, its text.
async fn read_body(
    content_type: &str,
    req: Request,
) -> Result<(Map<String, Value>, Option<String>), ApiError> {
    if content_type.starts_with("multipart/form-data") {
        return Ok((form_to_object(multipart_pairs(req, &()).await?)?, None));
    }
    let bytes = Bytes::from_request(req, &())
        .await
        .map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let pairs = form_urlencoded::parse(&bytes).into_owned().collect();
        return Ok((form_to_object(pairs)?, None));
    }
    let fields = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::BadRequest("the body is not UTF-8 text".into()))?;
    Ok((fields, Some(text)))
}

/// The configuration's text: the JSON body itself when it is the document, else the
/// `config` field, else a non-form body as it came; `None` when there is none.
fn config_text(params: &Map<String, Value>, raw: Option<String>) -> Option<String> {
    if params.contains_key("_format_version") {
        let mut doc = params.clone();
        doc.remove("check_hash");
        doc.remove("flatten_errors");
        return Some(Value::Object(doc).to_string());
    }
    if let Some(text) = params.get("config").and_then(Value::as_str) {
        return Some(text.to_string());
    }
    raw.filter(|t| !t.trim().is_empty())
}

/// Kong's `truthy`: true, 1, or the strings true, 1, on, yes.
fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        Some(Value::String(s)) => {
            matches!(s.to_ascii_lowercase().as_str(), "true" | "1" | "on" | "yes")
        }
        _ => false,
    }
}

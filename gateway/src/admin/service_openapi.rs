//! `PUT /services/{s}/openapi`: the operator's own OpenAPI document for a service, which the
//! developer portal merges into the document it generates from the service's routes. YAML or
//! JSON; checked for the shape the portal relies on (errors name the field and its line) and
//! stored as JSON.
use super::error::ApiError;
use super::AdminState;
use crate::declarative::yaml;
use crate::model::schema::FieldErrors;
use crate::model::Kind;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

/// The operations a path item may hold.
pub const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

pub async fn put(
    State(st): State<Arc<AdminState>>,
    Path(key): Path<String>,
    body: String,
) -> Result<Response, ApiError> {
    st.writable("update", Kind::Service, Some(&key))?;
    let id = service_id(&st, &key).await?;
    let doc = parse(&body)?;
    let operations = doc["paths"]
        .as_object()
        .map_or(0, |p| p.values().map(operation_count).sum::<usize>());
    st.store()
        .set_service_openapi(&id, &doc.to_string(), crate::model::unix_now())
        .await?;
    Ok(Json(json!({
        "service": {"id": id},
        "openapi": doc["openapi"],
        "paths": doc["paths"].as_object().map_or(0, |p| p.len()),
        "operations": operations,
    }))
    .into_response())
}

pub async fn get(
    State(st): State<Arc<AdminState>>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let id = service_id(&st, &key).await?;
    let text = st
        .store()
        .service_openapi(&id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let doc: Value = serde_json::from_str(&text)
        .map_err(|e| ApiError::Store(crate::store::StoreError::Corrupt(e.to_string())))?;
    Ok(Json(doc).into_response())
}

pub async fn delete(
    State(st): State<Arc<AdminState>>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    st.writable("update", Kind::Service, Some(&key))?;
    let id = service_id(&st, &key).await?;
    st.store().delete_service_openapi(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn service_id(st: &AdminState, key: &str) -> Result<String, ApiError> {
    let service = st
        .store()
        .get(Kind::Service, key)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(service["id"].as_str().unwrap_or_default().to_string())
}

fn operation_count(item: &Value) -> usize {
    METHODS.iter().filter(|m| item.get(**m).is_some()).count()
}

/// Parses and checks a document: OpenAPI 3.0 or 3.1, an `info` with title and version, and
/// `paths` whose keys start with `/` and whose operations are objects with `responses`.
pub fn parse(text: &str) -> Result<Value, ApiError> {
    let located = yaml::parse(text).map_err(|e| {
        ApiError::BadRequest(format!("line {}: not YAML or JSON: {}", e.line, e.message))
    })?;
    let mut errors = FieldErrors::default();
    let at = |path: &str, message: &str| match located.line_of(path) {
        Some(line) => format!("{message} (line {line})"),
        None => message.to_string(),
    };
    let doc = &located.value;
    if !doc.is_object() {
        return Err(ApiError::BadRequest(
            "an OpenAPI document is an object".into(),
        ));
    }
    let version = doc["openapi"].as_str().unwrap_or("");
    if !(version.starts_with("3.0.") || version.starts_with("3.1.")) {
        errors.add(
            "openapi",
            at("openapi", "expected an OpenAPI version 3.0.x or 3.1.x"),
        );
    }
    for field in ["title", "version"] {
        if !doc["info"][field].is_string() {
            let path = format!("info.{field}");
            errors.add(&path, at(&path, "required string missing"));
        }
    }
    match doc["paths"].as_object() {
        Some(paths) => check_paths(paths, &mut errors, &at),
        None => errors.add("paths", at("paths", "expected an object of paths")),
    }
    errors.into_result().map_err(ApiError::Schema)?;
    Ok(located.value)
}

fn check_paths(
    paths: &serde_json::Map<String, Value>,
    errors: &mut FieldErrors,
    at: &dyn Fn(&str, &str) -> String,
) {
    for (path, item) in paths {
        let key = format!("paths.{path}");
        if !path.starts_with('/') {
            errors.add(&key, at(&key, "a path starts with /"));
        }
        for method in METHODS {
            let Some(op) = item.get(*method) else {
                continue;
            };
            let op_key = format!("{key}.{method}");
            if !op.is_object() {
                errors.add(&op_key, at(&op_key, "expected an operation object"));
            } else if op.get("responses").is_some_and(|r| !r.is_object()) {
                let r_key = format!("{op_key}.responses");
                errors.add(&r_key, at(&r_key, "expected an object of responses"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<(String, String)> {
        match parse(text) {
            Err(ApiError::Schema(f)) => f.flatten(),
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    #[test]
    fn the_petstore_document_is_accepted() {
        let text = include_str!("../../../tests/data/petstore-3.0.yaml");
        let doc = parse(text).unwrap();
        assert_eq!(doc["info"]["title"], "Swagger Petstore - OpenAPI 3.0");
        let ops: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(operation_count)
            .sum();
        assert_eq!(ops, 19);
    }

    #[test]
    fn each_problem_is_reported_with_its_line() {
        let e = errors("openapi: 2.0\ninfo:\n  title: x\npaths:\n  pets:\n    get: 3\n");
        assert!(
            e.contains(&(
                "openapi".into(),
                "expected an OpenAPI version 3.0.x or 3.1.x (line 1)".into()
            )),
            "{e:?}"
        );
        assert!(
            e.contains(&(
                "info.version".into(),
                "required string missing (line 2)".into()
            )),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|(k, v)| k == "paths.pets" && v.contains("starts with /")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|(k, v)| k == "paths.pets.get" && v.contains("operation object")),
            "{e:?}"
        );
    }

    #[test]
    fn text_that_is_not_yaml_is_refused() {
        assert!(matches!(parse("a: [1,"), Err(ApiError::BadRequest(m)) if m.contains("line")));
        assert!(matches!(parse("- 1"), Err(ApiError::BadRequest(_))));
    }
}

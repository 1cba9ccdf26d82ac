//! Kong's schema endpoints (kong/api/routes/kong.lua, plugins.lua): `/schemas/{entity}` and
//! `/schemas/plugins/{name}` describe what the admin API accepts, from the same field lists
//! that validate it; `/schemas/{entity}/validate` and `/schemas/plugins/validate` check a body
//! without storing it; `/plugins/enabled` lists the plugins this build has.
use super::body::EntityInput;
use super::error::ApiError;
use crate::model::{normalize, unix_now, Kind};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An entity kind by Kong's schema name (`keyauth_credentials`) or its collection.
fn kind_named(name: &str) -> Option<Kind> {
    Kind::ALL
        .into_iter()
        .find(|k| k.schema_name() == name || k.collection() == name)
}

fn no_entity(name: &str) -> Response {
    let message = format!("No entity named '{name}'");
    (StatusCode::NOT_FOUND, Json(json!({"message": message}))).into_response()
}

pub async fn entity(Path(name): Path<String>) -> Response {
    match kind_named(&name) {
        Some(kind) => Json(kind.schema()).into_response(),
        None => no_entity(&name),
    }
}

pub async fn plugin(Path(name): Path<String>) -> Response {
    match crate::plugins::spec(&name) {
        Some(spec) => Json(crate::plugins::schema(spec)).into_response(),
        None => {
            let message = format!("No plugin named '{name}'");
            (StatusCode::NOT_FOUND, Json(json!({"message": message}))).into_response()
        }
    }
}

fn validated(kind: Kind, input: EntityInput) -> Result<Response, ApiError> {
    normalize(kind, input.fields, None, input.source, unix_now())?;
    Ok(Json(json!({"message": "schema validation successful"})).into_response())
}

pub async fn validate_entity(
    Path(name): Path<String>,
    input: EntityInput,
) -> Result<Response, ApiError> {
    match kind_named(&name) {
        Some(kind) => validated(kind, input),
        None => Ok(no_entity(&name)),
    }
}

pub async fn validate_plugin(input: EntityInput) -> Result<Response, ApiError> {
    validated(Kind::Plugin, input)
}

pub async fn enabled_plugins() -> Response {
    let names: Vec<&str> = crate::plugins::registry().iter().map(|p| p.name).collect();
    Json(json!({"enabled_plugins": names})).into_response()
}

//! Admin API errors, answered in Kong's shapes.
use crate::model::schema::FieldErrors;
use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug)]
pub enum ApiError {
    Schema(FieldErrors),
    Store(StoreError),
    NotFound,
    BadRequest(String),
    /// A 400 with Kong's code and name (invalid offset, size or options).
    Invalid {
        code: u16,
        name: &'static str,
        message: String,
        fields: Option<serde_json::Value>,
    },
    /// A body of a type the admin API does not read.
    UnsupportedMediaType,
    /// A write in DB-less mode (Kong's "operation unsupported", 405).
    Unsupported(String),
    Unauthorized,
    /// Refused whoever asks (a cross-site browser request).
    Forbidden(String),
    /// A part the request needs is off or down (analytics).
    Unavailable(String),
}

impl From<FieldErrors> for ApiError {
    fn from(e: FieldErrors) -> Self {
        ApiError::Schema(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound,
            other => ApiError::Store(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::Schema(f) => (
                StatusCode::BAD_REQUEST,
                json!({"code": 2, "name": "schema violation", "message": f.message(), "fields": f.to_value()}),
            ),
            ApiError::NotFound => (StatusCode::NOT_FOUND, json!({"message": "Not found"})),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, json!({"message": m})),
            ApiError::Invalid {
                code,
                name,
                message,
                fields,
            } => {
                let mut body = json!({"code": code, "name": name, "message": message});
                if let Some(f) = fields {
                    body["fields"] = f;
                }
                (StatusCode::BAD_REQUEST, body)
            }
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({"message": "Unsupported Media Type"}),
            ),
            ApiError::Unsupported(m) => (
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"code": 12, "name": "operation unsupported", "message": m}),
            ),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                json!({"message": "a valid admin token is required (Authorization: Bearer <token> or Tollgate-Admin-Token)"}),
            ),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, json!({"message": m})),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, json!({"message": m})),
            ApiError::Store(e) => store_error(e),
        };
        (status, Json(body)).into_response()
    }
}

fn store_error(e: StoreError) -> (StatusCode, serde_json::Value) {
    let message = e.to_string();
    match e {
        StoreError::Unique { fields, .. } => (
            StatusCode::CONFLICT,
            json!({"code": 5, "name": "unique constraint violation", "message": message, "fields": fields}),
        ),
        // 409, as Kong's spec asserts (09-routes_routes_spec.lua:1817), though its
        // endpoints.lua maps the code to 400.
        StoreError::PrimaryKey { id } => (
            StatusCode::CONFLICT,
            json!({"code": 3, "name": "primary key violation", "message": message, "fields": {"id": id}}),
        ),
        StoreError::MissingReference { field, id, .. } => (
            StatusCode::BAD_REQUEST,
            json!({"code": 4, "name": "foreign key violation", "message": message, "fields": {field: {"id": id}}}),
        ),
        StoreError::Referenced { .. } => (
            StatusCode::BAD_REQUEST,
            json!({"code": 4, "name": "foreign key violation", "message": message}),
        ),
        StoreError::NotFound => (StatusCode::NOT_FOUND, json!({"message": "Not found"})),
        StoreError::Unavailable(_) | StoreError::Corrupt(_) => {
            tracing::error!(error = %message, "admin request failed in the store");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"code": 8, "name": "database error", "message": message}),
            )
        }
    }
}

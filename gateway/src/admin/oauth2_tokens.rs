//! `/oauth2_tokens`: the oauth2 plugin's access tokens, as Kong's admin API serves them
//! (spec/03-plugins/25-oauth2/02-api_spec.lua). Only digests are stored, so an access or
//! refresh token is shown in clear once, in the answer that created it; a token is found by
//! its id or by the token itself, and deleting it revokes it on every node.
use super::body::EntityInput;
use super::error::ApiError;
use super::list;
use super::AdminState;
use crate::model::schema::{field, Field, FieldErrors, Ty};
use crate::model::{credential::generate_key, unix_now, Kind};
use crate::plugins::oauth2::tokens::hex_digest;
use crate::store::oauth2::TokenRow;
use crate::store::StoreError;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use uuid::Uuid;

type St = State<Arc<AdminState>>;

const FIELDS: &[Field] = &[
    field("credential", Ty::Ref),
    field("service", Ty::Ref),
    field("token_type", Ty::Enum(&["bearer"])),
    field(
        "expires_in",
        Ty::Int {
            min: 0,
            max: i32::MAX as i64,
        },
    ),
    field("access_token", Ty::Str),
    field("refresh_token", Ty::Str),
    field("authenticated_userid", Ty::Str),
    field("scope", Ty::Str),
];

/// `GET /oauth2_tokens`: a page of live tokens.
pub async fn list(State(st): St, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let (size, offset) = list::size_and_offset(q.as_deref())?;
    let offset = offset.map(|o| o.to_string());
    let rows = st.store().tokens(offset.as_deref(), size + 1).await?;
    let more = rows.len() > size;
    let data: Vec<Value> = rows.iter().take(size).map(|r| shown(r, None)).collect();
    let next_offset = match more {
        true => data
            .last()
            .and_then(|d| d["id"].as_str())
            .map(list::encode_offset),
        false => None,
    };
    let next = next_offset
        .as_ref()
        .map(|o| format!("/oauth2_tokens?offset={o}"));
    Ok(Json(json!({"data": data, "next": next, "offset": next_offset})).into_response())
}

/// `POST /oauth2_tokens`: a token for a credential, as an operator's migration or tests
/// make them.
pub async fn create(State(st): St, input: EntityInput) -> Result<Response, ApiError> {
    let from_form = input.is_form();
    let mut fields = input.fields;
    let mut errors = crate::model::schema::check(FIELDS, &mut fields, from_form);
    for required in ["credential", "expires_in"] {
        if fields.get(required).is_none_or(Value::is_null) {
            errors.add(required, "required field missing");
        }
    }
    errors.into_result()?;
    let reference = |f: &str| {
        fields[f]["id"]
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
    };
    let credential = reference("credential").ok_or_else(|| invalid("credential"))?;
    let service = fields.get("service").filter(|s| !s.is_null());
    let service = match service {
        Some(_) => Some(reference("service").ok_or_else(|| invalid("service"))?),
        None => None,
    };
    exists(&st, Kind::OAuth2Credential, "credential", credential).await?;
    if let Some(s) = service {
        exists(&st, Kind::Service, "service", s).await?;
    }
    let text = |f: &str| fields.get(f).and_then(Value::as_str).map(String::from);
    let access = text("access_token").unwrap_or_else(generate_key);
    let refresh = text("refresh_token");
    let now = unix_now();
    let expires_in = fields["expires_in"].as_i64().unwrap_or(0);
    let row = TokenRow {
        id: Uuid::new_v4().to_string(),
        access_hash: hex_digest(&access),
        refresh_hash: refresh.as_deref().map(hex_digest),
        credential_id: credential.to_string(),
        service_id: service.map(|s| s.to_string()),
        authenticated_userid: text("authenticated_userid"),
        scope: text("scope"),
        expires_in,
        created_at: now,
        purge_at: (expires_in > 0 && refresh.is_none()).then_some(now + expires_in),
        revoked_at: None,
        seq: 0,
    };
    taken(&st, &row).await?;
    let row = st.store().insert_token(row).await?;
    st.reloader.plugins.oauth2.apply(&row);
    let body = shown(&row, Some((&access, refresh.as_deref())));
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /oauth2_tokens/{id or access token}`.
pub async fn get_one(State(st): St, Path(key): Path<String>) -> Result<Response, ApiError> {
    let row = find(&st, &key).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(shown(&row, None)).into_response())
}

/// `DELETE /oauth2_tokens/{id or access token}`: revokes it; 204 whether or not it existed,
/// as Kong answers.
pub async fn delete_one(State(st): St, Path(key): Path<String>) -> Result<Response, ApiError> {
    if let Some(row) = find(&st, &key).await? {
        st.store().revoke_token(&row.id, unix_now()).await?;
        if let Ok(id) = Uuid::parse_str(&row.id) {
            st.reloader.plugins.oauth2.forget(id);
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn find(st: &AdminState, key: &str) -> Result<Option<TokenRow>, ApiError> {
    let lookup = match crate::model::uuid_key(key) {
        Some(_) => key.to_string(),
        None => hex_digest(key),
    };
    Ok(st.store().token(&lookup).await?)
}

/// A token as answers show it: the clear tokens only when just created.
fn shown(r: &TokenRow, created: Option<(&str, Option<&str>)>) -> Value {
    let mut body = Map::new();
    body.insert("id".into(), r.id.clone().into());
    body.insert("credential".into(), json!({"id": r.credential_id}));
    let service = r.service_id.as_ref().map(|s| json!({"id": s}));
    body.insert("service".into(), service.unwrap_or(Value::Null));
    body.insert("token_type".into(), "bearer".into());
    body.insert("expires_in".into(), r.expires_in.into());
    body.insert("authenticated_userid".into(), json!(r.authenticated_userid));
    body.insert("scope".into(), json!(r.scope));
    body.insert("created_at".into(), r.created_at.into());
    if let Some((access, refresh)) = created {
        body.insert("access_token".into(), access.into());
        body.insert("refresh_token".into(), json!(refresh));
    }
    Value::Object(body)
}

/// Refuses given tokens that are already stored, as Kong's unique keys do.
async fn taken(st: &AdminState, row: &TokenRow) -> Result<(), ApiError> {
    let store = st.store();
    let refresh_taken = match &row.refresh_hash {
        Some(h) => store.token_by_refresh(h, unix_now()).await?.is_some(),
        None => false,
    };
    let (field, taken) = match store.token(&row.access_hash).await?.is_some() {
        true => ("access_token", true),
        false => ("refresh_token", refresh_taken),
    };
    if !taken {
        return Ok(());
    }
    Err(ApiError::Store(StoreError::Unique {
        description: format!("{{{field}=<given>}}"),
        fields: json!({ field: "already exists" }),
    }))
}

fn invalid(field: &str) -> ApiError {
    let mut errors = FieldErrors::default();
    errors.add(field, "expected a record with an 'id'");
    ApiError::Schema(errors)
}

/// Refuses a reference to a `kind` entity that does not exist, as Kong's foreign key check.
async fn exists(
    st: &AdminState,
    kind: Kind,
    field: &'static str,
    id: Uuid,
) -> Result<(), ApiError> {
    match st.store().get(kind, &id.to_string()).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::Store(StoreError::MissingReference {
            field,
            id: id.to_string(),
            collection: kind.schema_name(),
        })),
    }
}

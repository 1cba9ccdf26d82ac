//! Kong Enterprise's consumer-group membership endpoints: `/consumer_groups/{g}/consumers`
//! (a group's consumers) and `/consumers/{c}/consumer_groups` (a consumer's groups). Each
//! membership is a `consumer_group_consumers` entity; these endpoints list, add and remove
//! them by the other side's id or name.
use super::body::EntityInput;
use super::error::ApiError;
use super::AdminState;
use crate::model::schema::FieldErrors;
use crate::model::{consumer_group::membership_key, normalize, unix_now, Kind, Source};
use crate::store::{ListQuery, StoreError};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, MethodRouter};
use axum::Json;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use uuid::Uuid;

/// One side of a membership, as a nested path sees it.
#[derive(Clone, Copy)]
pub struct Side {
    /// The entity the path names (`/consumer_groups/{g}`).
    owner: Kind,
    /// The entities listed under it.
    other: Kind,
    /// The field of a write's body that names them (`consumer`, `group`).
    given_as: &'static str,
    /// The answer's field for the listed ones (`consumers`, `consumer_groups`).
    listed_as: &'static str,
}

/// The membership path `/{parent}/{..}/{child}`, if it is one.
pub fn side(parent: &str, child: &str) -> Option<Side> {
    match (parent, child) {
        ("consumer_groups", "consumers") => Some(Side {
            owner: Kind::ConsumerGroup,
            other: Kind::Consumer,
            given_as: "consumer",
            listed_as: "consumers",
        }),
        ("consumers", "consumer_groups") => Some(Side {
            owner: Kind::Consumer,
            other: Kind::ConsumerGroup,
            given_as: "group",
            listed_as: "consumer_groups",
        }),
        _ => None,
    }
}

/// `DELETE /consumer_groups/{g}/consumers/{c}` (`parent`, `child`) or its mirror
/// `/consumers/{c}/consumer_groups/{g}`: a membership answers DELETE only, on a route of its
/// own so that its `Allow` says so.
pub fn delete_route(parent: &'static str, child: &'static str) -> MethodRouter<Arc<AdminState>> {
    delete(
        move |st: State<Arc<AdminState>>, Path((owner, other)): Path<(String, String)>| async move {
            let side = side(parent, child).expect("a membership path");
            remove(&st, side, &owner, &other).await
        },
    )
}

/// The store column and the membership field naming each kind.
fn column_and_field(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::ConsumerGroup => ("consumer_group_id", "consumer_group"),
        _ => ("consumer_id", "consumer"),
    }
}

async fn owner(st: &AdminState, side: Side, key: &str) -> Result<Value, ApiError> {
    st.store()
        .get(side.owner, key)
        .await?
        .ok_or(ApiError::NotFound)
}

fn id(body: &Value) -> Uuid {
    body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default()
}

/// The entities of the other side `owner_id` is a member with, at most 1,000.
async fn others(st: &AdminState, side: Side, owner_id: Uuid) -> Result<Vec<Value>, ApiError> {
    let (column, _) = column_and_field(side.owner);
    let (_, other_field) = column_and_field(side.other);
    let query = ListQuery {
        size: 1000,
        offset: None,
        parent: Some((column, owner_id)),
        tags: Vec::new(),
        any_tag: false,
    };
    let memberships = st.store().list(Kind::ConsumerGroupMember, &query).await?;
    let mut out = Vec::new();
    for m in memberships.data {
        let other = m[other_field]["id"].as_str().unwrap_or_default();
        if let Some(body) = st.store().get(side.other, other).await? {
            out.push(body);
        }
    }
    Ok(out)
}

pub async fn list(st: &AdminState, side: Side, key: &str) -> Result<Response, ApiError> {
    let owner = owner(st, side, key).await?;
    let data = others(st, side, id(&owner)).await?;
    Ok(Json(json!({"data": data, "next": null})).into_response())
}

/// Adds the owner to each of the given others (one name or id, or a list of them): 201 with
/// the owner and the others, as Kong Enterprise answers. One already a member is a 409, and
/// then none is added.
pub async fn add(
    st: &AdminState,
    side: Side,
    key: &str,
    input: EntityInput,
) -> Result<Response, ApiError> {
    st.writable("create", Kind::ConsumerGroupMember, None)?;
    let owner = owner(st, side, key).await?;
    let mut given = match input.fields.get(side.given_as) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    };
    if given.is_empty() {
        let mut errors = FieldErrors::default();
        errors.add(side.given_as, "required field missing");
        return Err(errors.into());
    }
    given.sort();
    given.dedup();
    let mut added = Vec::new();
    for name in &given {
        let other =
            st.store().get(side.other, name).await?.ok_or_else(|| {
                ApiError::BadRequest(format!("{} '{name}' not found", side.given_as))
            })?;
        added.push(other);
    }
    let (_, owner_field) = column_and_field(side.owner);
    let (_, other_field) = column_and_field(side.other);
    let mut records = Vec::new();
    for other in &added {
        let mut fields = Map::new();
        fields.insert(owner_field.into(), json!({"id": owner["id"]}));
        fields.insert(other_field.into(), json!({"id": other["id"]}));
        let n = normalize(
            Kind::ConsumerGroupMember,
            fields,
            None,
            Source::Typed,
            unix_now(),
        )?;
        records.push(n.record);
    }
    st.store().insert_all(&records).await?;
    st.reloader.poke();
    let owner_name = match side.owner {
        Kind::ConsumerGroup => "consumer_group",
        _ => "consumer",
    };
    let answer = json!({ owner_name: owner, side.listed_as: added });
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// Takes the owner out of `other` (an id or name): 204, also when it was not a member.
pub async fn remove(
    st: &AdminState,
    side: Side,
    key: &str,
    other: &str,
) -> Result<Response, ApiError> {
    st.writable("remove", Kind::ConsumerGroupMember, None)?;
    let owner = owner(st, side, key).await?;
    let Some(other) = st.store().get(side.other, other).await? else {
        return Err(ApiError::NotFound);
    };
    let (group, consumer) = match side.owner {
        Kind::ConsumerGroup => (id(&owner), id(&other)),
        _ => (id(&other), id(&owner)),
    };
    let membership = st
        .store()
        .get(Kind::ConsumerGroupMember, &membership_key(group, consumer))
        .await?;
    if let Some(m) = membership {
        match st.store().delete(Kind::ConsumerGroupMember, id(&m)).await {
            Ok(()) | Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        st.reloader.poke();
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

//! CRUD for every entity kind, top-level (`/services/{id}`) and nested
//! (`/consumers/{c}/key-auth`), with `{id or name}` addressing as in Kong.
use super::body::EntityInput;
use super::certificates;
use super::error::ApiError;
use super::list;
use super::memberships;
use super::AdminState;
use crate::model::owner::ClusterObject;
use crate::model::{normalize, unix_now, Kind, Normalized, Source};
use crate::store::StoreError;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use uuid::Uuid;

type St = State<Arc<AdminState>>;

/// Entities under one parent: which parent, the store column and the body's reference field.
#[derive(Clone, Copy)]
struct Parent {
    id: Uuid,
    column: &'static str,
    field: &'static str,
}

/// Kong's nested collections (`/consumers/{c}/key-auth`): the parent kind, the child's path
/// under it and the child kind. The child refers to its parent by the parent kind's own
/// reference field (`consumer`), stored in the column of that name with `_id`.
pub const NESTED: [(Kind, &str, Kind); 13] = [
    (Kind::Service, "routes", Kind::Route),
    (Kind::Service, "plugins", Kind::Plugin),
    (Kind::Route, "plugins", Kind::Plugin),
    (Kind::Consumer, "plugins", Kind::Plugin),
    (Kind::ConsumerGroup, "plugins", Kind::Plugin),
    (Kind::Consumer, "key-auth", Kind::KeyAuth),
    (Kind::Consumer, "basic-auth", Kind::BasicAuth),
    (Kind::Consumer, "jwt", Kind::JwtSecret),
    (Kind::Consumer, "hmac-auth", Kind::HmacAuth),
    (Kind::Consumer, "oauth2", Kind::OAuth2Credential),
    (Kind::Consumer, "acls", Kind::Acl),
    (Kind::Upstream, "targets", Kind::Target),
    (Kind::Certificate, "snis", Kind::Sni),
];

/// `/consumers/{c}/key-auth` → the child kind, the parent kind, the column and ref field.
fn nested(parent: &str, child: &str) -> Option<(Kind, Kind, &'static str, &'static str)> {
    let (parent_kind, _, kind) = NESTED
        .into_iter()
        .find(|(p, c, _)| p.collection() == parent && *c == child)?;
    let field = parent_field(parent_kind);
    let column = match parent_kind {
        Kind::Service => "service_id",
        Kind::Route => "route_id",
        Kind::Consumer => "consumer_id",
        Kind::Upstream => "upstream_id",
        Kind::ConsumerGroup => "consumer_group_id",
        _ => "certificate_id",
    };
    Some((kind, parent_kind, column, field))
}

/// The field by which a nested entity refers to its parent (of `NESTED`'s parent kinds).
pub fn parent_field(parent: Kind) -> &'static str {
    match parent {
        Kind::Service => "service",
        Kind::Route => "route",
        Kind::Consumer => "consumer",
        Kind::Upstream => "upstream",
        Kind::ConsumerGroup => "consumer_group",
        _ => "certificate",
    }
}

fn kind_of(collection: &str) -> Result<Kind, ApiError> {
    Kind::from_collection(collection).ok_or(ApiError::NotFound)
}

async fn scope(
    st: &AdminState,
    parent: &str,
    pid: &str,
    child: &str,
) -> Result<(Kind, Parent), ApiError> {
    let (kind, parent_kind, column, field) = nested(parent, child).ok_or(ApiError::NotFound)?;
    let parent_body = st
        .store()
        .get(parent_kind, pid)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((
        kind,
        Parent {
            id: id_of(&parent_body)?,
            column,
            field,
        },
    ))
}

fn id_of(body: &Value) -> Result<Uuid, ApiError> {
    body.get("id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| ApiError::Store(StoreError::Corrupt("entity without an id".into())))
}

pub async fn list(
    st: St,
    Path(collection): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let kind = kind_of(&collection)?;
    list::answer(&st, kind, None, q.as_deref(), &format!("/{collection}")).await
}

pub async fn create(
    st: St,
    Path(collection): Path<String>,
    input: EntityInput,
) -> Result<Response, ApiError> {
    do_create(&st, kind_of(&collection)?, None, input).await
}

pub async fn get_one(
    st: St,
    Path((collection, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let kind = kind_of(&collection)?;
    let body = find(&st, kind, &key, None).await?;
    let shown = read(&st, kind, body, unix_now()).await?;
    Ok(Json(shown.ok_or(ApiError::NotFound)?).into_response())
}

pub async fn patch_one(
    st: St,
    Path((collection, key)): Path<(String, String)>,
    input: EntityInput,
) -> Result<Response, ApiError> {
    do_patch(&st, kind_of(&collection)?, &key, None, input).await
}

pub async fn put_one(
    st: St,
    Path((collection, key)): Path<(String, String)>,
    input: EntityInput,
) -> Result<Response, ApiError> {
    do_put(&st, kind_of(&collection)?, &key, None, input).await
}

pub async fn delete_one(
    st: St,
    Path((collection, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    do_delete(&st, kind_of(&collection)?, &key, None).await
}

pub async fn nested_list(
    st: St,
    Path((parent, pid, child)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    if let Some(answer) = referenced(&st, &parent, &pid, &child).await? {
        return Ok(answer);
    }
    if let Some(side) = memberships::side(&parent, &child) {
        return memberships::list(&st, side, &pid).await;
    }
    let (kind, p) = scope(&st, &parent, &pid, &child).await?;
    let base = format!("/{parent}/{pid}/{child}");
    list::answer(&st, kind, Some((p.column, p.id)), q.as_deref(), &base).await
}

pub async fn nested_create(
    st: St,
    Path((parent, pid, child)): Path<(String, String, String)>,
    input: EntityInput,
) -> Result<Response, ApiError> {
    if let Some(side) = memberships::side(&parent, &child) {
        return memberships::add(&st, side, &pid, input).await;
    }
    let (kind, p) = scope(&st, &parent, &pid, &child).await?;
    do_create(&st, kind, Some(p), input).await
}

pub async fn nested_get(
    st: St,
    Path((parent, pid, child, key)): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    let (kind, p) = scope(&st, &parent, &pid, &child).await?;
    let body = find(&st, kind, &key, Some(p)).await?;
    let shown = read(&st, kind, body, unix_now()).await?;
    Ok(Json(shown.ok_or(ApiError::NotFound)?).into_response())
}

pub async fn nested_patch(
    st: St,
    Path((parent, pid, child, key)): Path<(String, String, String, String)>,
    input: EntityInput,
) -> Result<Response, ApiError> {
    let (kind, p) = scope(&st, &parent, &pid, &child).await?;
    do_patch(&st, kind, &key, Some(p), input).await
}

pub async fn nested_put(
    st: St,
    Path((parent, pid, child, key)): Path<(String, String, String, String)>,
    input: EntityInput,
) -> Result<Response, ApiError> {
    let (kind, p) = scope(&st, &parent, &pid, &child).await?;
    do_put(&st, kind, &key, Some(p), input).await
}

pub async fn nested_delete(
    st: St,
    Path((parent, pid, child, key)): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    let (kind, p) = scope(&st, &parent, &pid, &child).await?;
    do_delete(&st, kind, &key, Some(p)).await
}

async fn do_create(
    st: &AdminState,
    kind: Kind,
    parent: Option<Parent>,
    input: EntityInput,
) -> Result<Response, ApiError> {
    st.writable("create", kind, None)?;
    let mut fields = input.fields;
    if let Some(p) = parent {
        fields.insert(p.field.into(), json!({"id": p.id}));
    }
    let n = write(st, kind, fields, None, input.source, false).await?;
    Ok((StatusCode::CREATED, Json(shown(st, n).await?)).into_response())
}

/// The write every create, patch and put ends in: references by name resolved, the fields
/// checked against `base` (what is kept of the stored body, or none), stored (replacing the
/// entity with the same id when `replace`), and the snapshot asked to pick the change up.
async fn write(
    st: &AdminState,
    kind: Kind,
    mut fields: Map<String, Value>,
    base: Option<&Value>,
    source: Source,
    replace: bool,
) -> Result<Normalized, ApiError> {
    resolve_references(st, &mut fields).await?;
    let snis = match kind {
        Kind::Certificate => certificates::given(&fields),
        _ => None,
    };
    let n = normalize(kind, fields, base, source, unix_now())?;
    if let Some(names) = &snis {
        certificates::check_free(st, n.record.id, names).await?;
    }
    st.store().save(&n.record, replace).await?;
    if let Some(names) = &snis {
        certificates::replace(st, n.record.id, names).await?;
    }
    st.reloader.poke();
    Ok(n)
}

async fn do_patch(
    st: &AdminState,
    kind: Kind,
    key: &str,
    parent: Option<Parent>,
    input: EntityInput,
) -> Result<Response, ApiError> {
    st.writable("update", kind, Some(key))?;
    let existing = find(st, kind, key, parent).await?;
    not_cluster_owned(kind, &existing)?;
    let n = write(st, kind, input.fields, Some(&existing), input.source, true).await?;
    Ok(Json(shown(st, n).await?).into_response())
}

/// Creates or replaces the entity at `key`: an id, or a name for a new entity.
async fn do_put(
    st: &AdminState,
    kind: Kind,
    key: &str,
    parent: Option<Parent>,
    input: EntityInput,
) -> Result<Response, ApiError> {
    st.writable("create or update", kind, Some(key))?;
    let existing = st.store().get(kind, &lookup_key(kind, key, parent)).await?;
    let mut fields = input.fields;
    // The path names the entity, whatever id the body gives; one of the wrong type is refused.
    if let Some(given) = fields.get("id").filter(|v| !v.is_null()) {
        if given
            .as_str()
            .and_then(|s| uuid::Uuid::parse_str(s).ok())
            .is_none()
        {
            let mut errors = crate::model::schema::FieldErrors::default();
            errors.add("id", "expected a valid UUID");
            return Err(errors.into());
        }
    }
    if let Some(p) = parent {
        fields.insert(p.field.into(), json!({"id": p.id}));
    }
    match crate::model::uuid_key(key) {
        Some(id) => {
            fields.insert("id".into(), json!(id));
        }
        None => {
            fields.insert(kind.name_field().into(), json!(key));
        }
    }
    if let Some(e) = &existing {
        not_cluster_owned(kind, e)?;
        fields.insert("id".into(), e["id"].clone());
    }
    // PUT replaces: the stored body only lends its creation time.
    let base = existing
        .as_ref()
        .map(|e| json!({"id": e["id"], "created_at": e["created_at"]}));
    let n = write(st, kind, fields, base.as_ref(), input.source, true).await?;
    Ok(Json(shown(st, n).await?).into_response())
}

async fn do_delete(
    st: &AdminState,
    kind: Kind,
    key: &str,
    parent: Option<Parent>,
) -> Result<Response, ApiError> {
    st.writable("remove", kind, Some(key))?;
    let existing = match find(st, kind, key, parent).await {
        Ok(e) => e,
        // Kong answers 204 for a delete of something already gone.
        Err(ApiError::NotFound) => return Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) => return Err(e),
    };
    not_cluster_owned(kind, &existing)?;
    match st.store().delete(kind, id_of(&existing)?).await {
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    st.reloader.poke();
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Refuses to change an entity the Kubernetes controller made (tagged `k8s-kind:...`): it
/// changes with its Kubernetes object, and the next translation would undo the write.
fn not_cluster_owned(kind: Kind, existing: &Value) -> Result<(), ApiError> {
    match ClusterObject::of(existing) {
        None => Ok(()),
        Some(object) => Err(ApiError::Unsupported(format!(
            "this '{}' entity belongs to the Kubernetes {object}: change that object instead",
            kind.schema_name()
        ))),
    }
}

/// The entity at `key`, which must belong to `parent` when one is given.
async fn find(
    st: &AdminState,
    kind: Kind,
    key: &str,
    parent: Option<Parent>,
) -> Result<Value, ApiError> {
    let body = st
        .store()
        .get(kind, &lookup_key(kind, key, parent))
        .await?
        .ok_or(ApiError::NotFound)?;
    if let Some(p) = parent {
        let owner = body
            .get(p.field)
            .and_then(|r| r.get("id"))
            .and_then(Value::as_str);
        if owner != Some(p.id.to_string().as_str()) {
            return Err(ApiError::NotFound);
        }
    }
    Ok(body)
}

/// What the store finds `key` by: a target is named by its `host:port` within its upstream,
/// an ACL by its group within its consumer.
fn lookup_key(kind: Kind, key: &str, parent: Option<Parent>) -> String {
    match parent {
        Some(p) if kind == Kind::Target && crate::model::uuid_key(key).is_none() => {
            let normal = crate::model::target::normal(key).unwrap_or_else(|_| key.to_string());
            crate::model::target::unique_key(p.id, &normal)
        }
        Some(p) if kind == Kind::Acl && crate::model::uuid_key(key).is_none() => {
            crate::model::acl::unique_key(p.id, key)
        }
        _ => key.to_string(),
    }
}

/// An entity as reads show it: a key-auth credential with a `ttl` shows the seconds it has
/// left, as Kong's does, and none once it has expired (the proxy no longer takes it). The
/// `ttl` counts from the credential's last write, and 0 is none, as in Kong's store
/// (strategies/postgres/init.lua:351-376).
fn live(kind: Kind, mut body: Value, now: i64) -> Option<Value> {
    if kind != Kind::KeyAuth {
        return Some(body);
    }
    let (Some(ttl), Some(written)) = (body["ttl"].as_i64(), body["updated_at"].as_i64()) else {
        return Some(body);
    };
    if ttl == 0 {
        body["ttl"] = Value::Null;
        return Some(body);
    }
    let left = written + ttl - now;
    if left <= 0 {
        return None;
    }
    body["ttl"] = left.into();
    Some(body)
}

/// Kong's foreign-key endpoints (`/key-auths/{key}/consumer`, `/routes/{r}/service`,
/// `/plugins/{p}/route`): the entity the parent's reference names.
async fn referenced(
    st: &AdminState,
    parent: &str,
    pid: &str,
    child: &str,
) -> Result<Option<Response>, ApiError> {
    let Some((_, target)) = crate::model::REFERENCES
        .into_iter()
        .find(|(f, _)| *f == child)
    else {
        return Ok(None);
    };
    let body = st
        .store()
        .get(kind_of(parent)?, pid)
        .await?
        .ok_or(ApiError::NotFound)?;
    let id = body[child]["id"].as_str().ok_or(ApiError::NotFound)?;
    let found = st
        .store()
        .get(target, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Some(Json(found).into_response()))
}

/// The body answered for a write: a generated key is shown this once.
async fn shown(st: &AdminState, n: Normalized) -> Result<Value, ApiError> {
    let mut body = read(st, n.record.kind, n.record.body, unix_now())
        .await?
        .unwrap_or(Value::Null);
    if let (Some((field, secret)), Some(obj)) = (n.revealed, body.as_object_mut()) {
        obj.insert(field.into(), Value::String(secret));
    }
    Ok(body)
}

/// An entity as every read shows it: [`live`], and a certificate with its SNIs' names.
pub(super) async fn read(
    st: &AdminState,
    kind: Kind,
    body: Value,
    now: i64,
) -> Result<Option<Value>, ApiError> {
    match live(kind, body, now) {
        Some(body) if kind == Kind::Certificate => {
            Ok(Some(certificates::with_snis(st, body).await?))
        }
        other => Ok(other),
    }
}

/// Kong's "foreign keys unresolved" (code 13) for a reference by a name nothing has.
fn unresolved(field: &str, kind: Kind, name: &str) -> ApiError {
    let by = kind.name_field();
    let why = format!(
        "the foreign key cannot be resolved with '{{{by}=\"{name}\"}}' for an existing '{}' entity",
        kind.collection()
    );
    ApiError::Invalid {
        code: 13,
        name: "foreign keys unresolved",
        message: format!("foreign key unresolved ({field}.{by}: {why})"),
        fields: Some(json!({field: {by: why}})),
    }
}

/// Turns references given by name (`{"name": "svc"}`, `{"id": "slow_user"}`, or a bare string)
/// into `{"id": <uuid>}`; an unknown one is a foreign key error on that field.
async fn resolve_references(
    st: &AdminState,
    fields: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    for (field, kind) in crate::model::REFERENCES {
        let Some(v) = fields.get(field) else { continue };
        let key = match v {
            Value::String(s) => s.clone(),
            Value::Object(m) => match ["id", "name", "username"].iter().find_map(|k| m.get(*k)) {
                Some(Value::String(s)) if m.len() == 1 => s.clone(),
                _ => continue,
            },
            _ => continue,
        };
        let Some(found) = st.store().get(kind, &key).await? else {
            if crate::model::uuid_key(&key).is_some() {
                // Left for the store to report with the id the caller gave.
                fields.insert(field.into(), json!({"id": key}));
                continue;
            }
            return Err(unresolved(field, kind, &key));
        };
        fields.insert(field.into(), json!({"id": found["id"]}));
    }
    Ok(())
}

//! `/proxy-cache`: the proxy-cache plugin's stored responses, looked up and purged as Kong's
//! admin API does (kong/plugins/proxy-cache/api.lua; spec/03-plugins/31-proxy-cache/
//! 03-api_spec.lua): every instance's store, or one instance's by its id. A purge on this
//! node empties its memory stores and the Redis every node shares; other nodes' memory stores
//! keep their entries until they expire (Kong broadcasts purges through its cluster events).
use super::error::ApiError;
use super::AdminState;
use crate::model::Kind;
use crate::plugins::proxy_cache::{self, key::Key, Storage};
use crate::store::ListQuery;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Map, Value};
use std::sync::Arc;

type St = State<Arc<AdminState>>;

/// `DELETE /proxy-cache`: empties every instance's store.
pub async fn purge_all(State(st): St) -> Result<Response, ApiError> {
    for storage in stores(&st).await? {
        storage
            .flush(now_ms())
            .await
            .map_err(ApiError::Unavailable)?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /proxy-cache/{key}`: the entry under `key` in the first store that has it.
pub async fn lookup(State(st): St, Path(key): Path<String>) -> Result<Response, ApiError> {
    let key = Key::from_hex(&key).ok_or(ApiError::NotFound)?;
    for storage in stores(&st).await? {
        if let Some(found) = fetch(&storage, &key).await? {
            return Ok(Json(found.describe()).into_response());
        }
    }
    Err(ApiError::NotFound)
}

/// `DELETE /proxy-cache/{key}`: takes the entry under `key` out of the first store that has it.
pub async fn purge(State(st): St, Path(key): Path<String>) -> Result<Response, ApiError> {
    let key = Key::from_hex(&key).ok_or(ApiError::NotFound)?;
    for storage in stores(&st).await? {
        if storage
            .purge(&key, now_ms())
            .await
            .map_err(ApiError::Unavailable)?
        {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
    }
    Err(ApiError::NotFound)
}

/// `GET /proxy-cache/{plugin}/caches/{key}`: the entry under `key` in that instance's store.
pub async fn lookup_in(
    State(st): St,
    Path((plugin, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let storage = instance_store(&st, &plugin).await?;
    let key = Key::from_hex(&key).ok_or(ApiError::NotFound)?;
    let found = fetch(&storage, &key).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(found.describe()).into_response())
}

/// `DELETE /proxy-cache/{plugin}/caches/{key}`.
pub async fn purge_in(
    State(st): St,
    Path((plugin, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let storage = instance_store(&st, &plugin).await?;
    let key = Key::from_hex(&key).ok_or(ApiError::NotFound)?;
    match storage.purge(&key, now_ms()).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT.into_response()),
        Ok(false) => Err(ApiError::NotFound),
        Err(e) => Err(ApiError::Unavailable(e)),
    }
}

async fn fetch(storage: &Storage, key: &Key) -> Result<Option<Arc<proxy_cache::Cached>>, ApiError> {
    storage
        .lookup(key, now_ms())
        .await
        .map_err(ApiError::Unavailable)
}

/// The store of the proxy-cache instance with id `plugin`.
async fn instance_store(st: &AdminState, plugin: &str) -> Result<Storage, ApiError> {
    let found = st.store().get(Kind::Plugin, plugin).await?;
    let config = found
        .filter(|p| p["name"] == "proxy-cache")
        .and_then(|p| p["config"].as_object().cloned())
        .ok_or(ApiError::NotFound)?;
    storage_of(st, &config)
}

/// The stores of every proxy-cache instance (each memory dictionary and Redis once).
async fn stores(st: &AdminState) -> Result<Vec<Storage>, ApiError> {
    let mut configs: Vec<Map<String, Value>> = Vec::new();
    let mut q = ListQuery {
        size: 1000,
        ..ListQuery::default()
    };
    loop {
        let page = st.store().list(Kind::Plugin, &q).await?;
        let caches = page.data.iter().filter(|p| p["name"] == "proxy-cache");
        configs.extend(caches.filter_map(|p| p["config"].as_object().cloned()));
        match page.next_offset {
            Some(next) => q.offset = Some(next),
            None => break,
        }
    }
    let mut seen: Vec<Value> = Vec::new();
    let mut stores = Vec::new();
    for config in configs {
        let place = ["strategy", "memory", "redis"].map(|k| config.get(k).cloned());
        let place = Value::Array(place.into_iter().map(Option::unwrap_or_default).collect());
        if !seen.contains(&place) {
            seen.push(place);
            stores.push(storage_of(st, &config)?);
        }
    }
    Ok(stores)
}

fn storage_of(st: &AdminState, config: &Map<String, Value>) -> Result<Storage, ApiError> {
    proxy_cache::storage(config, &st.reloader.plugins).map_err(ApiError::Unavailable)
}

fn now_ms() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_millis() as u64)
}

//! The config store: where entities live between restarts, shared by every node.
//!
//! One table holds every entity as a validated JSON body, with the columns the store must
//! index beside it (unique keys, parent references, tags). The same SQL runs on SQLite (the
//! default, a file in the data dir), PostgreSQL (several nodes), and an in-memory SQLite that
//! holds a declarative file in DB-less mode. A version counter bumped by each write is the
//! change feed that tells every node to rebuild its snapshot.
mod console;
mod error;
pub mod keyring;
pub mod oauth2;
pub mod portal;

pub use error::StoreError;
pub use keyring::Keyring;

use crate::model::{Kind, Record};
use serde_json::Value;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Which database backs the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// In memory, loaded from a declarative file (`TOLLGATE_DATABASE=off`).
    Memory,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Seals the secret fields of bodies written and opens them when read.
    keyring: Arc<Keyring>,
}

/// A page of a listing, with the offset of the next page when there is one.
#[derive(Debug)]
pub struct Page {
    pub data: Vec<Value>,
    pub next_offset: Option<String>,
}

/// What a listing is narrowed to.
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    pub size: usize,
    pub offset: Option<String>,
    /// `(column, id)`: entities under one parent (`/services/{s}/routes`).
    pub parent: Option<(&'static str, Uuid)>,
    /// Tags that must all be present (Kong's `tags=a,b`), or any of them (`tags=a/b`).
    pub tags: Vec<String>,
    pub any_tag: bool,
}

impl Store {
    /// Connects, creating the SQLite file if needed, and applies the migrations.
    pub async fn connect(
        backend: Backend,
        url: &str,
        keyring: Keyring,
    ) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let memory = backend == Backend::Memory;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Postgres { 8 } else { 1 })
            .min_connections(u32::from(memory))
            .acquire_timeout(Duration::from_secs(5))
            .idle_timeout((!memory).then_some(Duration::from_secs(600)))
            .max_lifetime((!memory).then_some(Duration::from_secs(1800)))
            .connect(url)
            .await
            .map_err(StoreError::Unavailable)?;
        let store = Store {
            pool,
            backend,
            keyring: Arc::new(keyring),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.backend {
            Backend::Postgres => sqlx::migrate!("../migrations/postgres"),
            Backend::Sqlite | Backend::Memory => sqlx::migrate!("../migrations/sqlite"),
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Unavailable(e.into()))
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The change counter; it moves on every committed write.
    pub async fn version(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT version FROM config_version WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Every entity, parents before children, oldest first: what a snapshot is built from.
    pub async fn load_all(&self) -> Result<Vec<(Kind, Value)>, StoreError> {
        self.load_all_but(None).await
    }

    /// Every entity but those with a tag starting with `tag_prefix`, as `load_all` orders
    /// them: what a snapshot takes from the store when another source owns those.
    pub async fn load_all_but(
        &self,
        tag_prefix: Option<&str>,
    ) -> Result<Vec<(Kind, Value)>, StoreError> {
        let rows = match tag_prefix {
            None => sqlx::query("SELECT kind, body FROM entities ORDER BY created_at, id"),
            Some(prefix) => sqlx::query(
                "SELECT kind, body FROM entities WHERE tags NOT LIKE $1 ORDER BY created_at, id",
            )
            .bind(format!("%,{prefix}%")),
        }
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let kind: String = row.try_get(0)?;
            let Some(kind) = Kind::from_collection(&kind) else {
                continue;
            };
            out.push((kind, self.body(kind, &row, 1)?));
        }
        out.sort_by_key(|(k, _)| *k);
        Ok(out)
    }

    /// One entity by id, or by its name (username for consumers).
    pub async fn get(&self, kind: Kind, key: &str) -> Result<Option<Value>, StoreError> {
        let (column, value) = match crate::model::uuid_key(key) {
            Some(_) => ("id", key.to_string()),
            None => kind.name_lookup(key),
        };
        let sql = format!("SELECT body FROM entities WHERE kind = $1 AND {column} = $2");
        let row = sqlx::query(&sql)
            .bind(kind.collection())
            .bind(value)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| self.body(kind, &r, 0)).transpose()
    }

    /// The entity of `kind` whose second unique key (a consumer's `custom_id`) is `key`.
    pub async fn find_by_alt_key(
        &self,
        kind: Kind,
        key: &str,
    ) -> Result<Option<Value>, StoreError> {
        let row = sqlx::query("SELECT body FROM entities WHERE kind = $1 AND alt_key = $2")
            .bind(kind.collection())
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| self.body(kind, &r, 0)).transpose()
    }

    /// One page of a kind's entities, in id order.
    pub async fn list(&self, kind: Kind, q: &ListQuery) -> Result<Page, StoreError> {
        let mut sql = String::from("SELECT id, body FROM entities WHERE kind = $1");
        let mut binds: Vec<String> = vec![kind.collection().to_string()];
        let mut bind = |sql: &mut String, clause: &str, v: String| {
            binds.push(v);
            sql.push_str(&clause.replace('?', &format!("${}", binds.len())));
        };
        if let Some(offset) = &q.offset {
            bind(&mut sql, " AND id > ?", offset.clone());
        }
        if let Some((column, id)) = q.parent {
            bind(&mut sql, &format!(" AND {column} = ?"), id.to_string());
        }
        // `_` and `%` in a tag are themselves, not LIKE's wildcards.
        let escape = |t: &str| {
            t.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        };
        let tag_clauses: Vec<String> = q
            .tags
            .iter()
            .map(|t| format!("%,{},%", escape(t)))
            .collect();
        if !tag_clauses.is_empty() {
            let joiner = if q.any_tag { " OR " } else { " AND " };
            sql.push_str(" AND (");
            for (i, t) in tag_clauses.into_iter().enumerate() {
                if i > 0 {
                    sql.push_str(joiner);
                }
                bind(&mut sql, "tags LIKE ? ESCAPE '\\'", t);
            }
            sql.push(')');
        }
        sql.push_str(&format!(" ORDER BY id LIMIT {}", q.size + 1));
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = query.bind(b);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let more = rows.len() > q.size;
        let mut data = Vec::with_capacity(q.size);
        let mut last_id = None;
        for row in rows.iter().take(q.size) {
            last_id = Some(row.try_get::<String, _>(0)?);
            data.push(self.body(kind, row, 1)?);
        }
        Ok(Page {
            data,
            next_offset: if more { last_id } else { None },
        })
    }

    /// The plugins not scoped to a consumer or group that can apply to a service's requests: on the
    /// service, on one of its routes, or global. One query, whatever the number of
    /// consumer-scoped plugins (the developer portal makes several per application).
    pub async fn plugins_for_service(&self, service_id: Uuid) -> Result<Vec<Value>, StoreError> {
        let rows = sqlx::query(
            "SELECT body FROM entities WHERE kind = 'plugins' AND consumer_id IS NULL AND \
             consumer_group_id IS NULL AND (service_id = $1 OR \
             (service_id IS NULL AND route_id IS NULL) OR route_id IN \
             (SELECT id FROM entities WHERE kind = 'routes' AND service_id = $1)) \
             ORDER BY created_at, id",
        )
        .bind(service_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| parse_body(r, 0)).collect()
    }

    /// Inserts a new entity, or replaces the one with the same id (`PUT`).
    pub async fn save(&self, rec: &Record, replace: bool) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        if !replace {
            check_new_id(&mut tx, rec).await?;
        }
        check_references(&mut tx, rec).await?;
        check_unique(&mut tx, rec).await?;
        if replace {
            sqlx::query("DELETE FROM entities WHERE kind = $1 AND id = $2")
                .bind(rec.kind.collection())
                .bind(rec.id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        self.insert_many(&mut tx, std::slice::from_ref(rec)).await?;
        bump_version(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Inserts new entities together: all of them, or none when one is refused.
    pub async fn insert_all(&self, records: &[Record]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for rec in records {
            check_new_id(&mut tx, rec).await?;
            check_references(&mut tx, rec).await?;
            check_unique(&mut tx, rec).await?;
        }
        self.insert_many(&mut tx, records).await?;
        bump_version(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The body in `column` of `row`, an entity of `kind`, with its secrets opened.
    fn body(&self, kind: Kind, row: &AnyRow, column: usize) -> Result<Value, StoreError> {
        self.keyring.opened(kind, parse_body(row, column)?)
    }

    /// Deletes an entity and what hangs off it (a consumer's credentials, a route's plugins).
    /// A service that routes still use is refused, as Kong does.
    pub async fn delete(&self, kind: Kind, id: Uuid) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let id_s = id.to_string();
        if kind == Kind::Service {
            let used = sqlx::query(
                "SELECT 1 FROM entities WHERE kind = 'routes' AND service_id = $1 LIMIT 1",
            )
            .bind(id_s.clone())
            .fetch_optional(&mut *tx)
            .await?;
            if used.is_some() {
                return Err(StoreError::Referenced {
                    child: "routes",
                    parent: "services",
                });
            }
        }
        let column = match kind {
            Kind::Service => Some("service_id"),
            Kind::Route => Some("route_id"),
            Kind::Consumer => Some("consumer_id"),
            Kind::Upstream => Some("upstream_id"),
            Kind::Certificate => Some("certificate_id"),
            Kind::ConsumerGroup => Some("consumer_group_id"),
            Kind::KeyAuth
            | Kind::BasicAuth
            | Kind::JwtSecret
            | Kind::HmacAuth
            | Kind::OAuth2Credential
            | Kind::Acl
            | Kind::ConsumerGroupMember
            | Kind::Plugin
            | Kind::Target
            | Kind::Sni
            | Kind::CaCertificate => None,
        };
        if let Some(column) = column {
            sqlx::query(&format!("DELETE FROM entities WHERE {column} = $1"))
                .bind(id_s.clone())
                .execute(&mut *tx)
                .await?;
        }
        if kind == Kind::Service {
            sqlx::query("DELETE FROM service_openapi WHERE service_id = $1")
                .bind(id_s.clone())
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query("DELETE FROM entities WHERE kind = $1 AND id = $2")
            .bind(kind.collection())
            .bind(id_s)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        bump_version(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the whole configuration, entities and the portal's plans, in one transaction
    /// (DB-less reloads). Callers check the records first; the store only refuses what
    /// breaks its keys.
    pub async fn replace_all(
        &self,
        records: &[Record],
        plans: &[portal::Plan],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM entities")
            .execute(&mut *tx)
            .await?;
        self.insert_many(&mut tx, records).await?;
        sqlx::query("DELETE FROM portal_plans")
            .execute(&mut *tx)
            .await?;
        for plan in plans {
            portal::insert_plan(&mut tx, plan).await?;
        }
        bump_version(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces, in one transaction, the entities carrying a tag that starts with `tag_prefix`
    /// (the Kubernetes controller's, which all carry `k8s-kind:...`) with `records`; every
    /// other entity (the portal's applications and keys, an operator's own) stays. Callers
    /// check the records first; a clash with a remaining entity's key refuses the whole change.
    /// The version stays: the controller serves these entities through the reloader's overlay
    /// (`Reloader::serve_overlay`), and this copy is for reading (admin API, console); a bump
    /// would only rebuild the same snapshot again.
    pub async fn replace_tagged(
        &self,
        tag_prefix: &str,
        records: &[Record],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM entities WHERE tags LIKE $1")
            .bind(format!("%,{tag_prefix}%"))
            .execute(&mut *tx)
            .await?;
        self.insert_many(&mut tx, records).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Changes some entities in one transaction: `upserts` replace the entities with their ids
    /// (or are added), `deletes` go. The Kubernetes controller writes only what a change to the
    /// cluster changed, not its whole configuration again; the version stays, as in
    /// `replace_tagged`.
    pub async fn update_entities(
        &self,
        upserts: &[Record],
        deletes: &[(Kind, Uuid)],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let gone = upserts
            .iter()
            .map(|r| (r.kind, r.id))
            .chain(deletes.iter().copied());
        for (kind, id) in gone {
            sqlx::query("DELETE FROM entities WHERE kind = $1 AND id = $2")
                .bind(kind.collection())
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        self.insert_many(&mut tx, upserts).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The `n`th (from 1) parameter of a statement in the backend's syntax.
    fn placeholder(&self, n: usize) -> String {
        match self.backend {
            Backend::Postgres => format!("${n}"),
            Backend::Sqlite | Backend::Memory => "?".into(),
        }
    }

    /// Writes `records` with a few multi-row INSERTs.
    async fn insert_many(&self, tx: &mut Tx, records: &[Record]) -> Result<(), StoreError> {
        let id = |u: Option<Uuid>| u.map(|u| u.to_string());
        for chunk in records.chunks(INSERT_BATCH) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|r| {
                    let params: Vec<String> = (1..=ENTITY_COLUMNS)
                        .map(|c| self.placeholder(r * ENTITY_COLUMNS + c))
                        .collect();
                    format!("({})", params.join(", "))
                })
                .collect();
            let sql = format!(
                "INSERT INTO entities (kind, id, name_key, alt_key, service_id, route_id, consumer_id, upstream_id, certificate_id, consumer_group_id, tags, body, created_at) VALUES {}",
                rows.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for rec in chunk {
                let k = &rec.keys;
                let created_at = rec
                    .body
                    .get("created_at")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                q = q
                    .bind(rec.kind.collection())
                    .bind(rec.id.to_string())
                    .bind(k.name_key.clone())
                    .bind(k.alt_key.clone())
                    .bind(id(k.service_id))
                    .bind(id(k.route_id))
                    .bind(id(k.consumer_id))
                    .bind(id(k.upstream_id))
                    .bind(id(k.certificate_id))
                    .bind(id(k.consumer_group_id))
                    .bind(format!(",{},", k.tags.join(",")))
                    .bind(self.keyring.sealed(rec.kind, &rec.body).to_string())
                    .bind(created_at);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

fn parse_body(row: &AnyRow, column: usize) -> Result<Value, StoreError> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Rows per INSERT statement when many entities are written at once (12 parameters each, well
/// under SQLite's and PostgreSQL's parameter limits): one round trip per batch instead of per
/// row makes the Kubernetes controller's 20,000-entity writes take milliseconds, not seconds.
/// (SQLite's parameters are anonymous `?`: sqlx looks a numbered one up by name, a scan of
/// all the statement's parameters each time.)
const INSERT_BATCH: usize = 400;
const ENTITY_COLUMNS: usize = 13;

async fn bump_version(tx: &mut Tx) -> Result<(), StoreError> {
    sqlx::query("UPDATE config_version SET version = version + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A new entity's id must not be one its kind already has.
async fn check_new_id(tx: &mut Tx, rec: &Record) -> Result<(), StoreError> {
    let found = sqlx::query("SELECT 1 FROM entities WHERE kind = $1 AND id = $2")
        .bind(rec.kind.collection())
        .bind(rec.id.to_string())
        .fetch_optional(&mut **tx)
        .await?;
    match found {
        Some(_) => Err(StoreError::PrimaryKey {
            id: rec.id.to_string(),
        }),
        None => Ok(()),
    }
}

/// Every parent an entity names must exist.
async fn check_references(tx: &mut Tx, rec: &Record) -> Result<(), StoreError> {
    for (field, kind) in crate::model::REFERENCES {
        let Some(id) = rec.keys.reference(field) else {
            continue;
        };
        let found = sqlx::query("SELECT 1 FROM entities WHERE kind = $1 AND id = $2")
            .bind(kind.collection())
            .bind(id.to_string())
            .fetch_optional(&mut **tx)
            .await?;
        if found.is_none() {
            return Err(StoreError::MissingReference {
                field,
                id: id.to_string(),
                collection: kind.collection(),
            });
        }
    }
    Ok(())
}

/// Unique keys, checked before the insert so the error can name the field.
async fn check_unique(tx: &mut Tx, rec: &Record) -> Result<(), StoreError> {
    let keys = [
        ("name_key", &rec.keys.name_key),
        ("alt_key", &rec.keys.alt_key),
    ];
    for (column, value) in keys {
        let Some(value) = value else { continue };
        let found = sqlx::query(&format!(
            "SELECT 1 FROM entities WHERE kind = $1 AND {column} = $2 AND id <> $3"
        ))
        .bind(rec.kind.collection())
        .bind(value.clone())
        .bind(rec.id.to_string())
        .fetch_optional(&mut **tx)
        .await?;
        if found.is_some() {
            let (description, fields) = error::unique_key(rec, column);
            return Err(StoreError::Unique {
                description,
                fields,
            });
        }
    }
    Ok(())
}

//! The developer portal's rows in the config store: uploaded OpenAPI documents, developer
//! accounts, plans and applications. They live beside the entities so every node on one
//! PostgreSQL serves the same portal.
use super::{Store, StoreError};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

/// The tag on the consumers the developer portal makes for applications.
pub const APPLICATION_TAG: &str = "tollgate-portal";
/// The tag on the plugins a plan makes on an application's consumer.
pub const PLAN_TAG: &str = "tollgate-plan";

/// A developer's account. `status` is `pending` (awaiting the operator's approval), `active`
/// or `suspended`.
#[derive(Debug, Clone, PartialEq)]
pub struct Developer {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub status: String,
    pub created_at: i64,
}

/// Requests allowed per window; `None` for no limit in that window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlanLimits {
    pub second: Option<u64>,
    pub minute: Option<u64>,
    pub hour: Option<u64>,
    pub day: Option<u64>,
}

/// What an application is allowed: its rate limits, on which services (ids; empty means
/// every service). Serialized as the admin API's `/plans` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Plan {
    pub id: String,
    pub name: String,
    pub limits: PlanLimits,
    pub services: Vec<String>,
    /// The credentials an application on the plan may pick (`CREDENTIALS`).
    pub credentials: Vec<String>,
    pub created_at: i64,
}

/// The credentials an application can have: an API key, OAuth2 client credentials (a client
/// id and secret traded for tokens at the API's token endpoint), or a JWT key whose public
/// key the developer uploads.
pub const CREDENTIALS: [&str; 3] = ["key-auth", "oauth2", "jwt"];

/// What a plan allows when it names nothing: API keys, as every plan did before.
pub fn default_credentials() -> Vec<String> {
    vec!["key-auth".to_string()]
}

#[derive(Serialize, Deserialize)]
struct PlanBody {
    limits: PlanLimits,
    services: Vec<String>,
    #[serde(default = "default_credentials")]
    credentials: Vec<String>,
}

/// Writes `p` (a new plan, or the same id's new values) in `tx`.
pub(super) async fn insert_plan(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    p: &Plan,
) -> Result<(), StoreError> {
    let body = serde_json::to_string(&PlanBody {
        limits: p.limits.clone(),
        services: p.services.clone(),
        credentials: p.credentials.clone(),
    })
    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query(
        "INSERT INTO portal_plans (id, name, body, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, body = excluded.body",
    )
    .bind(p.id.clone())
    .bind(p.name.clone())
    .bind(body)
    .bind(p.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A developer as the admin API shows one: never the password hash.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeveloperView {
    pub id: String,
    pub email: String,
    /// `pending`, `active` or `suspended`.
    pub status: String,
    pub created_at: i64,
}

impl From<&Developer> for DeveloperView {
    fn from(d: &Developer) -> Self {
        DeveloperView {
            id: d.id.clone(),
            email: d.email.clone(),
            status: d.status.clone(),
            created_at: d.created_at,
        }
    }
}

/// A reference to another row by its id, as Kong writes references (`{"id": "..."}`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IdRef {
    pub id: String,
}

/// An application as the admin API shows one: its id is its consumer's.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApplicationView {
    pub id: String,
    pub name: String,
    pub developer: IdRef,
    pub plan: IdRef,
    pub consumer: IdRef,
    pub created_at: i64,
}

impl From<&Application> for ApplicationView {
    fn from(a: &Application) -> Self {
        let id = |s: &str| IdRef { id: s.to_string() };
        ApplicationView {
            id: a.consumer_id.clone(),
            name: a.name.clone(),
            developer: id(&a.developer_id),
            plan: id(&a.plan_id),
            consumer: id(&a.consumer_id),
            created_at: a.created_at,
        }
    }
}

/// A developer's application: a gateway consumer (same id) with its owner and plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Application {
    pub consumer_id: String,
    pub developer_id: String,
    pub name: String,
    pub plan_id: String,
    /// Which of `CREDENTIALS` the application authenticates with.
    pub credential: String,
    pub created_at: i64,
}

const DEVELOPER_COLUMNS: &str = "id, email, password_hash, status, created_at";
const APPLICATION_COLUMNS: &str =
    "consumer_id, developer_id, name, plan_id, created_at, credential";

fn developer(r: &AnyRow) -> Result<Developer, StoreError> {
    Ok(Developer {
        id: r.try_get(0)?,
        email: r.try_get(1)?,
        password_hash: r.try_get(2)?,
        status: r.try_get(3)?,
        created_at: r.try_get(4)?,
    })
}

fn plan(r: &AnyRow) -> Result<Plan, StoreError> {
    let body: String = r.try_get(2)?;
    let body: PlanBody =
        serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Plan {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        limits: body.limits,
        services: body.services,
        credentials: body.credentials,
        created_at: r.try_get(3)?,
    })
}

fn application(r: &AnyRow) -> Result<Application, StoreError> {
    Ok(Application {
        consumer_id: r.try_get(0)?,
        developer_id: r.try_get(1)?,
        name: r.try_get(2)?,
        plan_id: r.try_get(3)?,
        created_at: r.try_get(4)?,
        credential: r.try_get(5)?,
    })
}

impl Store {
    /// The OpenAPI document an operator uploaded for a service, as it was sent.
    pub async fn service_openapi(&self, service_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT document FROM service_openapi WHERE service_id = $1")
            .bind(service_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<String, _>(0)).transpose()?)
    }

    pub async fn set_service_openapi(
        &self,
        service_id: &str,
        document: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO service_openapi (service_id, document, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (service_id) DO UPDATE SET document = excluded.document, \
             updated_at = excluded.updated_at",
        )
        .bind(service_id)
        .bind(document)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// `true` when there was a document to delete.
    pub async fn delete_service_openapi(&self, service_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM service_openapi WHERE service_id = $1")
            .bind(service_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Adds a developer unless the email is taken; `true` when added.
    pub async fn add_developer(&self, d: &Developer) -> Result<bool, StoreError> {
        let done = sqlx::query(&format!(
            "INSERT INTO portal_developers ({DEVELOPER_COLUMNS}) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (email) DO NOTHING"
        ))
        .bind(d.id.clone())
        .bind(d.email.clone())
        .bind(d.password_hash.clone())
        .bind(d.status.clone())
        .bind(d.created_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn developer_by_email(&self, email: &str) -> Result<Option<Developer>, StoreError> {
        self.one_developer("email", email).await
    }

    pub async fn developer(&self, id: &str) -> Result<Option<Developer>, StoreError> {
        self.one_developer("id", id).await
    }

    async fn one_developer(
        &self,
        column: &str,
        value: &str,
    ) -> Result<Option<Developer>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {DEVELOPER_COLUMNS} FROM portal_developers WHERE {column} = $1"
        ))
        .bind(value)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(developer).transpose()
    }

    /// Every developer, newest first.
    pub async fn developers(&self) -> Result<Vec<Developer>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DEVELOPER_COLUMNS} FROM portal_developers ORDER BY created_at DESC, email"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(developer).collect()
    }

    /// Sets one column of a developer (`status` or `password_hash`); `false` when no such
    /// developer.
    pub async fn update_developer(
        &self,
        id: &str,
        column: DeveloperColumn,
        value: &str,
    ) -> Result<bool, StoreError> {
        let column = match column {
            DeveloperColumn::Status => "status",
            DeveloperColumn::PasswordHash => "password_hash",
        };
        let done = sqlx::query(&format!(
            "UPDATE portal_developers SET {column} = $1 WHERE id = $2"
        ))
        .bind(value)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every plan, by name.
    pub async fn plans(&self) -> Result<Vec<Plan>, StoreError> {
        let rows = sqlx::query("SELECT id, name, body, created_at FROM portal_plans ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(plan).collect()
    }

    pub async fn plan(&self, id: &str) -> Result<Option<Plan>, StoreError> {
        let row = sqlx::query("SELECT id, name, body, created_at FROM portal_plans WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(plan).transpose()
    }

    /// Creates or replaces a plan; a name another plan has is refused.
    pub async fn save_plan(&self, p: &Plan) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let taken = sqlx::query("SELECT 1 FROM portal_plans WHERE name = $1 AND id <> $2")
            .bind(p.name.clone())
            .bind(p.id.clone())
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Err(StoreError::Unique {
                description: format!("{{name=\"{}\"}}", p.name),
                fields: serde_json::json!({"name": p.name}),
            });
        }
        insert_plan(&mut tx, p).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a plan no application is on.
    pub async fn delete_plan(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let used = sqlx::query("SELECT 1 FROM portal_applications WHERE plan_id = $1 LIMIT 1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if used.is_some() {
            return Err(StoreError::Referenced {
                child: "applications",
                parent: "plans",
            });
        }
        let done = sqlx::query("DELETE FROM portal_plans WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    /// Adds an application unless its developer has one by that name; `true` when added.
    pub async fn add_application(&self, a: &Application) -> Result<bool, StoreError> {
        let done = sqlx::query(&format!(
            "INSERT INTO portal_applications ({APPLICATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT DO NOTHING"
        ))
        .bind(a.consumer_id.clone())
        .bind(a.developer_id.clone())
        .bind(a.name.clone())
        .bind(a.plan_id.clone())
        .bind(a.created_at)
        .bind(a.credential.clone())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The application `consumer_id` when `developer_id` owns it: a developer can reach only
    /// their own.
    pub async fn owned_application(
        &self,
        developer_id: &str,
        consumer_id: &str,
    ) -> Result<Option<Application>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {APPLICATION_COLUMNS} FROM portal_applications \
             WHERE consumer_id = $1 AND developer_id = $2"
        ))
        .bind(consumer_id)
        .bind(developer_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(application).transpose()
    }

    /// Applications by one column's value (`developer_id` or `plan_id`), oldest first.
    pub async fn applications(
        &self,
        by: ApplicationsBy,
        value: &str,
    ) -> Result<Vec<Application>, StoreError> {
        let column = match by {
            ApplicationsBy::Developer => "developer_id",
            ApplicationsBy::Plan => "plan_id",
        };
        let rows = sqlx::query(&format!(
            "SELECT {APPLICATION_COLUMNS} FROM portal_applications WHERE {column} = $1 \
             ORDER BY created_at, name"
        ))
        .bind(value)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(application).collect()
    }

    /// Every application, oldest first.
    pub async fn all_applications(&self) -> Result<Vec<Application>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {APPLICATION_COLUMNS} FROM portal_applications ORDER BY created_at, name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(application).collect()
    }

    pub async fn application(&self, consumer_id: &str) -> Result<Option<Application>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {APPLICATION_COLUMNS} FROM portal_applications WHERE consumer_id = $1"
        ))
        .bind(consumer_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(application).transpose()
    }

    /// Moves an application to another plan; `false` when no such application.
    pub async fn set_application_plan(
        &self,
        consumer_id: &str,
        plan_id: &str,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE portal_applications SET plan_id = $1 WHERE consumer_id = $2")
                .bind(plan_id)
                .bind(consumer_id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_application(&self, consumer_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM portal_applications WHERE consumer_id = $1")
            .bind(consumer_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// The columns of a developer that change after sign-up.
pub enum DeveloperColumn {
    Status,
    PasswordHash,
}

/// How to select applications.
pub enum ApplicationsBy {
    Developer,
    Plan,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Backend, Keyring};

    async fn store() -> Store {
        Store::connect(Backend::Memory, "sqlite::memory:", Keyring::ephemeral())
            .await
            .unwrap()
    }

    fn dev(id: &str, email: &str) -> Developer {
        Developer {
            id: id.into(),
            email: email.into(),
            password_hash: "h".into(),
            status: "active".into(),
            created_at: 1,
        }
    }

    async fn save(s: &Store, kind: crate::model::Kind, body: serde_json::Value) -> String {
        let fields = body.as_object().cloned().unwrap();
        let n =
            crate::model::normalize(kind, fields, None, crate::model::Source::Typed, 1).unwrap();
        s.save(&n.record, false).await.unwrap();
        n.record.id.to_string()
    }

    #[tokio::test]
    async fn a_services_plugins_are_its_own_its_routes_and_the_global_ones() {
        use crate::model::Kind;
        use serde_json::json;
        let s = store().await;
        let svc = save(&s, Kind::Service, json!({"name": "a", "host": "h"})).await;
        let other = save(&s, Kind::Service, json!({"name": "b", "host": "h"})).await;
        let route = save(
            &s,
            Kind::Route,
            json!({"paths": ["/a"], "service": {"id": svc}}),
        )
        .await;
        let consumer = save(&s, Kind::Consumer, json!({"username": "c"})).await;
        let tr = |scope: serde_json::Value| {
            let mut p = json!({"name": "request-termination"});
            p.as_object_mut()
                .unwrap()
                .extend(scope.as_object().unwrap().clone());
            p
        };
        let wanted = [
            save(&s, Kind::Plugin, tr(json!({"service": {"id": svc}}))).await,
            save(&s, Kind::Plugin, tr(json!({"route": {"id": route}}))).await,
            save(&s, Kind::Plugin, tr(json!({}))).await,
        ];
        save(&s, Kind::Plugin, tr(json!({"service": {"id": other}}))).await;
        save(
            &s,
            Kind::Plugin,
            tr(json!({"consumer": {"id": consumer}, "service": {"id": svc}})),
        )
        .await;
        let found = s.plugins_for_service(svc.parse().unwrap()).await.unwrap();
        let mut ids: Vec<String> = found
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_string())
            .collect();
        let mut expected = wanted.to_vec();
        ids.sort();
        expected.sort();
        assert_eq!(ids, expected);
    }

    #[tokio::test]
    async fn an_email_signs_up_once() {
        let s = store().await;
        assert!(s.add_developer(&dev("a", "a@x.test")).await.unwrap());
        assert!(!s.add_developer(&dev("b", "a@x.test")).await.unwrap());
        assert_eq!(
            s.developer_by_email("a@x.test").await.unwrap().unwrap().id,
            "a"
        );
    }

    #[tokio::test]
    async fn a_developer_reaches_only_their_own_applications() {
        let s = store().await;
        let app = Application {
            consumer_id: "c1".into(),
            developer_id: "a".into(),
            name: "app".into(),
            plan_id: "p".into(),
            credential: "key-auth".into(),
            created_at: 1,
        };
        assert!(s.add_application(&app).await.unwrap());
        assert!(
            !s.add_application(&Application {
                consumer_id: "c2".into(),
                ..app.clone()
            })
            .await
            .unwrap(),
            "same name twice"
        );
        assert_eq!(s.owned_application("a", "c1").await.unwrap(), Some(app));
        assert_eq!(s.owned_application("b", "c1").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_plan_in_use_is_not_deleted_and_names_are_unique() {
        let s = store().await;
        let p = Plan {
            id: "p".into(),
            name: "Gold".into(),
            limits: PlanLimits {
                second: Some(5),
                ..PlanLimits::default()
            },
            services: vec!["s".into()],
            credentials: default_credentials(),
            created_at: 1,
        };
        s.save_plan(&p).await.unwrap();
        assert_eq!(s.plan("p").await.unwrap(), Some(p.clone()));
        let twin = Plan {
            id: "q".into(),
            ..p.clone()
        };
        assert!(matches!(
            s.save_plan(&twin).await,
            Err(StoreError::Unique { .. })
        ));
        let app = Application {
            consumer_id: "c".into(),
            developer_id: "d".into(),
            name: "n".into(),
            plan_id: "p".into(),
            credential: "key-auth".into(),
            created_at: 1,
        };
        s.add_application(&app).await.unwrap();
        assert!(matches!(
            s.delete_plan("p").await,
            Err(StoreError::Referenced { .. })
        ));
        s.delete_application("c").await.unwrap();
        s.delete_plan("p").await.unwrap();
        assert!(s.plans().await.unwrap().is_empty());
    }
}

//! Managing entities from the console: for services, routes, consumers and plugins a list with
//! paging, a create form whose errors appear next to their fields, and deletion behind a
//! confirmation page. Every read and write goes through the admin API (`admin_api`).
use super::{layout, ConsoleState, CurrentUser};
use crate::web::admin_api::{self, Answer, Payload};
use crate::web::page;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use leptos::prelude::*;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use tollgate_gateway::model::owner::ClusterObject;

/// How a form field is entered.
#[derive(Clone, Copy)]
pub enum Input {
    Text,
    Number,
    /// `true` / `false`, with the default first.
    Choice(&'static [&'static str]),
    /// One value per line (or comma): sent as `key[]`.
    Lines,
    /// A JSON object, sent as a JSON body.
    Json,
}

pub struct FieldSpec {
    pub key: &'static str,
    pub label: &'static str,
    pub input: Input,
    pub hint: &'static str,
}

const fn field(
    key: &'static str,
    label: &'static str,
    input: Input,
    hint: &'static str,
) -> FieldSpec {
    FieldSpec {
        key,
        label,
        input,
        hint,
    }
}

/// A table column: its heading, and how a row shows it.
pub type Column = (&'static str, fn(&Value) -> String);

pub struct Collection {
    pub path: &'static str,
    pub title: &'static str,
    pub columns: &'static [Column],
    /// Fields the admin API names that the form enters through another (a service's `url`).
    pub entered_as: &'static [(&'static str, &'static str)],
    pub form: &'static [FieldSpec],
    /// Each entity has a page of its own at `/{path}/{id}` (a consumer's keys, an upstream's
    /// targets).
    pub detail: bool,
}

fn text(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map_or(x.to_string(), String::from))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

fn reference(v: &Value, key: &str) -> String {
    v[key]["id"].as_str().unwrap_or("").to_string()
}

const BOOL: &[&str] = &["true", "false"];
const BOOL_OFF: &[&str] = &["false", "true"];

pub static COLLECTIONS: [Collection; 5] = [
    Collection {
        path: "services",
        title: "Services",
        columns: &[
            ("Name", |v| text(v, "name")),
            ("Upstream", |v| {
                format!(
                    "{}://{}:{}{}",
                    text(v, "protocol"),
                    text(v, "host"),
                    text(v, "port"),
                    text(v, "path")
                )
            }),
            ("Enabled", |v| text(v, "enabled")),
        ],
        entered_as: &[
            ("protocol", "url"),
            ("host", "url"),
            ("port", "url"),
            ("path", "url"),
        ],
        form: &[
            field("name", "Name", Input::Text, "letters, digits, . - _ ~"),
            field(
                "url",
                "URL",
                Input::Text,
                "http://host:port/path of the backend",
            ),
            field("retries", "Retries", Input::Number, "default 5"),
            field(
                "read_timeout",
                "Read timeout (ms)",
                Input::Number,
                "default 60000",
            ),
        ],
        detail: false,
    },
    Collection {
        path: "routes",
        title: "Routes",
        columns: &[
            ("Name", |v| text(v, "name")),
            ("Paths", |v| text(v, "paths")),
            ("Methods", |v| text(v, "methods")),
            ("Hosts", |v| text(v, "hosts")),
            ("Service", |v| reference(v, "service")),
        ],
        entered_as: &[],
        form: &[
            field("name", "Name", Input::Text, ""),
            field("service", "Service", Input::Text, "name or id"),
            field(
                "paths",
                "Paths",
                Input::Lines,
                "one per line: /api/ or ~/users/\\d+",
            ),
            field(
                "methods",
                "Methods",
                Input::Lines,
                "GET, POST … (any when empty)",
            ),
            field(
                "hosts",
                "Hosts",
                Input::Lines,
                "api.example.com, *.example.com",
            ),
            field("strip_path", "Strip path", Input::Choice(BOOL), ""),
            field(
                "preserve_host",
                "Preserve host",
                Input::Choice(BOOL_OFF),
                "",
            ),
        ],
        detail: false,
    },
    Collection {
        path: "consumers",
        title: "Consumers",
        columns: &[
            ("Username", |v| text(v, "username")),
            ("Custom id", |v| text(v, "custom_id")),
            ("Id", |v| text(v, "id")),
        ],
        entered_as: &[],
        form: &[
            field("username", "Username", Input::Text, ""),
            field("custom_id", "Custom id", Input::Text, "optional"),
        ],
        detail: true,
    },
    Collection {
        path: "plugins",
        title: "Plugins",
        columns: &[
            ("Name", |v| text(v, "name")),
            ("Service", |v| reference(v, "service")),
            ("Route", |v| reference(v, "route")),
            ("Consumer", |v| reference(v, "consumer")),
            ("Config", |v| v["config"].to_string()),
        ],
        entered_as: &[],
        form: &[
            field(
                "name",
                "Plugin",
                Input::Choice(&["rate-limiting", "key-auth"]),
                "any other: write its config as JSON below",
            ),
            field(
                "service",
                "Service",
                Input::Text,
                "name or id; empty for all",
            ),
            field("route", "Route", Input::Text, "name or id; empty for all"),
            field(
                "consumer",
                "Consumer",
                Input::Text,
                "username or id (not for key-auth)",
            ),
            field(
                "config.second",
                "Per second",
                Input::Number,
                "rate-limiting",
            ),
            field(
                "config.minute",
                "Per minute",
                Input::Number,
                "rate-limiting",
            ),
            field("config.hour", "Per hour", Input::Number, "rate-limiting"),
            field("config.day", "Per day", Input::Number, "rate-limiting"),
            field("config.month", "Per month", Input::Number, "rate-limiting"),
            field("config.year", "Per year", Input::Number, "rate-limiting"),
            field(
                "config.limit_by",
                "Limit by",
                Input::Choice(&["consumer", "credential", "ip", "service", "header", "path"]),
                "rate-limiting",
            ),
            field(
                "config.header_name",
                "Header name",
                Input::Text,
                "rate-limiting, limit by header",
            ),
            field(
                "config.path",
                "Path",
                Input::Text,
                "rate-limiting, limit by path",
            ),
            field(
                "config.policy",
                "Policy",
                Input::Choice(&["local", "redis"]),
                "rate-limiting",
            ),
            field(
                "config.redis.host",
                "Redis host",
                Input::Text,
                "rate-limiting, redis policy",
            ),
            field(
                "config.redis.port",
                "Redis port",
                Input::Number,
                "default 6379",
            ),
            field(
                "config.fault_tolerant",
                "Fault tolerant",
                Input::Choice(BOOL),
                "rate-limiting: pass when Redis fails",
            ),
            field(
                "config.hide_client_headers",
                "Hide client headers",
                Input::Choice(BOOL_OFF),
                "rate-limiting",
            ),
            field(
                "config.error_code",
                "Error code",
                Input::Number,
                "rate-limiting; default 429",
            ),
            field(
                "config.error_message",
                "Error message",
                Input::Text,
                "rate-limiting",
            ),
            field(
                "config.key_names",
                "Key names",
                Input::Lines,
                "key-auth; default apikey",
            ),
            field(
                "config.key_in_header",
                "Key in header",
                Input::Choice(BOOL),
                "key-auth",
            ),
            field(
                "config.key_in_query",
                "Key in query",
                Input::Choice(BOOL),
                "key-auth",
            ),
            field(
                "config.key_in_body",
                "Key in body",
                Input::Choice(BOOL_OFF),
                "key-auth",
            ),
            field(
                "config.hide_credentials",
                "Hide credentials",
                Input::Choice(BOOL_OFF),
                "key-auth",
            ),
            field(
                "config.anonymous",
                "Anonymous consumer",
                Input::Text,
                "key-auth; username or id",
            ),
            field(
                "config.run_on_preflight",
                "Run on preflight",
                Input::Choice(BOOL),
                "key-auth",
            ),
            field("config.realm", "Realm", Input::Text, "key-auth"),
            field(
                "other_name",
                "Other plugin",
                Input::Text,
                "its name, for the JSON editor",
            ),
            field(
                "config",
                "Config (JSON)",
                Input::Json,
                "for any plugin: {\"second\": 5}",
            ),
        ],
        detail: false,
    },
    Collection {
        path: "upstreams",
        title: "Upstreams",
        columns: &[
            ("Name", |v| text(v, "name")),
            ("Algorithm", |v| text(v, "algorithm")),
            ("Hash on", |v| text(v, "hash_on")),
            ("Slots", |v| text(v, "slots")),
        ],
        entered_as: &[],
        form: &[
            field(
                "name",
                "Name",
                Input::Text,
                "the host a service names to use it",
            ),
            field(
                "algorithm",
                "Algorithm",
                Input::Choice(tollgate_gateway::model::upstream::ALGORITHMS),
                "",
            ),
            field(
                "hash_on",
                "Hash on",
                Input::Choice(tollgate_gateway::model::upstream::HASH_ON),
                "consistent-hashing: what keeps a client on one target",
            ),
            field(
                "hash_on_header",
                "Hash header",
                Input::Text,
                "hash on header",
            ),
            field(
                "hash_on_cookie",
                "Hash cookie",
                Input::Text,
                "hash on cookie",
            ),
            field(
                "hash_on_query_arg",
                "Hash query argument",
                Input::Text,
                "hash on query_arg",
            ),
            field(
                "hash_on_uri_capture",
                "Hash URI capture",
                Input::Text,
                "hash on uri_capture",
            ),
            field(
                "host_header",
                "Host header",
                Input::Text,
                "sent upstream instead of the target's",
            ),
            field(
                "healthchecks.active.type",
                "Probe",
                Input::Choice(&["http", "https", "tcp"]),
                "active checks",
            ),
            field(
                "healthchecks.active.http_path",
                "Probe path",
                Input::Text,
                "default /",
            ),
            field(
                "healthchecks.active.healthy.interval",
                "Probe healthy every (s)",
                Input::Number,
                "0: not probed",
            ),
            field(
                "healthchecks.active.unhealthy.interval",
                "Probe unhealthy every (s)",
                Input::Number,
                "0: not probed",
            ),
            field(
                "healthchecks.active.healthy.successes",
                "Probe successes to recover",
                Input::Number,
                "",
            ),
            field(
                "healthchecks.active.unhealthy.http_failures",
                "Probe HTTP failures to fail",
                Input::Number,
                "",
            ),
            field(
                "healthchecks.active.unhealthy.tcp_failures",
                "Probe TCP failures to fail",
                Input::Number,
                "",
            ),
            field(
                "healthchecks.passive.unhealthy.http_failures",
                "Proxied HTTP failures to fail",
                Input::Number,
                "passive checks; 0: off",
            ),
            field(
                "healthchecks.passive.unhealthy.tcp_failures",
                "Proxied TCP failures to fail",
                Input::Number,
                "passive checks; 0: off",
            ),
            field(
                "healthchecks.passive.unhealthy.timeouts",
                "Proxied timeouts to fail",
                Input::Number,
                "passive checks; 0: off",
            ),
            field(
                "circuit_breaker.enabled",
                "Circuit breaker",
                Input::Choice(BOOL),
                "per target, even without checks",
            ),
            field(
                "circuit_breaker.consecutive_failures",
                "Breaker: failures in a row",
                Input::Number,
                "default 5",
            ),
            field(
                "circuit_breaker.open_for",
                "Breaker: open for (s)",
                Input::Number,
                "default 10",
            ),
        ],
        detail: true,
    },
];

pub fn collection(path: &str) -> Option<&'static Collection> {
    COLLECTIONS.iter().find(|c| c.path == path)
}

#[derive(Deserialize, Default)]
pub struct ListParams {
    offset: Option<String>,
    created: Option<String>,
}

/// What the form holds and what went wrong, when it is shown again.
#[derive(Default)]
pub struct Attempt {
    values: HashMap<String, String>,
    errors: HashMap<String, String>,
    message: Option<String>,
}

pub async fn list(
    State(st): State<Arc<ConsoleState>>,
    Extension(user): Extension<CurrentUser>,
    Path(path): Path<String>,
    Query(p): Query<ListParams>,
) -> Response {
    let Some(c) = collection(&path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    page(&st, &user, c, &p, Attempt::default(), StatusCode::OK).await
}

async fn page(
    st: &ConsoleState,
    user: &CurrentUser,
    c: &'static Collection,
    p: &ListParams,
    attempt: Attempt,
    status: StatusCode,
) -> Response {
    let mut uri = format!("/{}?size=100", c.path);
    if let Some(o) = &p.offset {
        uri.push_str(&format!(
            "&offset={}",
            form_urlencoded::byte_serialize(o.as_bytes()).collect::<String>()
        ));
    }
    let answer = admin_api::call(&st.admin, Method::GET, &uri, Payload::None).await;
    let rows = answer.body["data"].as_array().cloned().unwrap_or_default();
    let next = answer.body["offset"].as_str().map(|o| {
        format!(
            "/{}?offset={}",
            c.path,
            form_urlencoded::byte_serialize(o.as_bytes()).collect::<String>()
        )
    });
    let created = p.created.clone();
    let body = view! {
        {created.map(|n| view! { <p class="notice" role="status">"Created " {n} "."</p> })}
        {table(c, rows)}
        {next.map(|href| view! { <p><a href=href>"Next page →"</a></p> })}
        {form(c, attempt)}
    };
    (status, Html(layout::page(c.title, &user.0, body))).into_response()
}

/// The entities as a table. Those the Kubernetes controller made show their object and no
/// edit or delete: they change with the object.
fn table(c: &'static Collection, rows: Vec<Value>) -> impl IntoView {
    if rows.is_empty() {
        return view! { <p class="empty">"None yet."</p> }.into_any();
    }
    let owners: Vec<Option<ClusterObject>> = rows.iter().map(ClusterObject::of).collect();
    let any_owned = owners.iter().any(Option::is_some);
    view! {
        <section class="panel wide">
            <table>
                <thead><tr>
                    {c.columns.iter().map(|(label, _)| view! { <th>{*label}</th> }).collect_view()}
                    {any_owned.then(|| view! { <th>"Kubernetes object"</th> })}
                    <th></th>
                </tr></thead>
                <tbody>
                    {rows.into_iter().zip(owners).map(|(row, owner)| {
                        let id = text(&row, "id");
                        let open = c.detail.then(|| format!("/{}/{id}", c.path));
                        let owned = owner.is_some();
                        let changes = (!owned).then(|| view! {
                            <a href=format!("/{}/{id}/edit", c.path)>"Edit"</a>
                            <a href=format!("/{}/{id}/delete", c.path) class="danger">"Delete"</a>
                        });
                        view! {
                            <tr>
                                {c.columns.iter().map(|(_, value)| view! { <td>{value(&row)}</td> }).collect_view()}
                                {any_owned.then(|| view! { <td>{owner.map(|o| o.to_string())}</td> })}
                                <td class="actions">
                                    {open.map(|href| view! { <a href=href>"Open"</a> })}
                                    {changes}
                                    {owned.then(|| view! { <span class="hint">"read-only"</span> })}
                                </td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
    .into_any()
}

/// The line a page about an entity the Kubernetes controller made starts with.
pub fn owner_notice(entity: &Value) -> Option<impl IntoView + 'static> {
    let object = ClusterObject::of(entity)?;
    Some(view! {
        <p class="notice" role="status">
            {format!("Read-only: this entity belongs to the Kubernetes {object} and changes with it.")}
        </p>
    })
}

/// The entity at `/{path}/{id}` when the console may change it; else the page that says why
/// (not found, or the Kubernetes object it belongs to).
async fn changeable(
    st: &ConsoleState,
    user: &CurrentUser,
    path: &str,
    id: &str,
) -> Result<Value, Response> {
    let uri = format!("/{path}/{id}");
    let entity = admin_api::call_ok(&st.admin, Method::GET, &uri, Payload::None).await?;
    match ClusterObject::of(&entity.body) {
        Some(object) => Err(cluster_owned(user, &format!("/{path}"), &object)),
        None => Ok(entity.body),
    }
}

/// What an edit or a delete of an entity the Kubernetes controller made shows instead of its
/// form: the object to change.
fn cluster_owned(user: &CurrentUser, back: &str, object: &ClusterObject) -> Response {
    let command = match &object.namespace {
        Some(ns) => format!(
            "kubectl edit {} -n {ns} {}",
            object.kind.to_lowercase(),
            object.name
        ),
        None => format!(
            "kubectl edit {} {}",
            object.kind.to_lowercase(),
            object.name
        ),
    };
    let body = view! {
        <section class="panel">
            <p class="notice" role="status">
                {format!("This entity belongs to the Kubernetes {object} and changes with it: change the object in the cluster, not here.")}
            </p>
            <pre><code>{command}</code></pre>
            <p><a href=back.to_string()>"Back"</a></p>
        </section>
    };
    (
        StatusCode::CONFLICT,
        Html(layout::page("Read-only", &user.0, body)),
    )
        .into_response()
}

fn form(c: &'static Collection, attempt: Attempt) -> impl IntoView {
    entity_form(c, attempt, "Add", format!("/{}", c.path), "Create")
}

/// The create or edit form of `c`, posting to `action`.
fn entity_form(
    c: &'static Collection,
    attempt: Attempt,
    title: &'static str,
    action: String,
    button: &'static str,
) -> impl IntoView {
    let Attempt {
        values,
        errors,
        message,
    } = attempt;
    view! {
        <section class="panel wide">
            <h2>{title}</h2>
            {message.map(|m| view! { <p class="error" role="alert">{m}</p> })}
            <form method="post" action=action class="entity">
                {c.form.iter().map(|f| input(f, values.get(f.key).cloned().unwrap_or_default(), errors.get(f.key).cloned())).collect_view()}
                <button type="submit">{button}</button>
            </form>
        </section>
    }
}

fn input(f: &'static FieldSpec, value: String, error: Option<String>) -> impl IntoView {
    let control = match f.input {
        Input::Text => view! { <input name=f.key value=value/> }.into_any(),
        Input::Number => view! { <input name=f.key value=value inputmode="numeric"/> }.into_any(),
        Input::Choice(options) => view! {
            <select name=f.key>
                <option value="">"(default)"</option>
                {options.iter().map(|o| view! { <option value=*o selected=value == *o>{*o}</option> }).collect_view()}
            </select>
        }
        .into_any(),
        Input::Lines | Input::Json => view! { <textarea name=f.key rows="2">{page::textarea_text(&value)}</textarea> }.into_any(),
    };
    let class = if error.is_some() {
        "field invalid"
    } else {
        "field"
    };
    view! {
        <label class=class>
            <span>{f.label}</span>
            {control}
            <small>{f.hint}</small>
            {error.map(|e| view! { <span class="error">{e}</span> })}
        </label>
    }
}

/// The admin API payload for a submitted form: form pairs, or JSON when a JSON config is given.
pub fn payload(
    c: &Collection,
    submitted: &[(String, String)],
) -> Result<Payload, (String, String)> {
    let get = |k: &str| {
        submitted
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    if let Some(raw) = get("config").filter(|_| c.path == "plugins") {
        let config: Map<String, Value> = serde_json::from_str(&raw)
            .map_err(|e| ("config".to_string(), format!("not a JSON object: {e}")))?;
        let mut body = json!({ "name": get("other_name").or(get("name")), "config": config });
        for scope in ["service", "route", "consumer"] {
            if let Some(v) = get(scope) {
                body[scope] = json!({ "id": v });
            }
        }
        return Ok(Payload::Json(body));
    }
    let mut pairs = Vec::new();
    for f in c.form {
        let Some(value) = get(f.key) else { continue };
        match f.input {
            Input::Lines => pairs.extend(
                value
                    .split(['\n', ','])
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(|v| (format!("{}[]", f.key), v.to_string())),
            ),
            Input::Json => {}
            _ if f.key == "other_name" => {}
            _ => pairs.push((f.key.to_string(), value)),
        }
    }
    Ok(Payload::Form(pairs))
}

pub async fn create(
    State(st): State<Arc<ConsoleState>>,
    Extension(user): Extension<CurrentUser>,
    Path(path): Path<String>,
    Form(submitted): Form<Vec<(String, String)>>,
) -> Response {
    let Some(c) = collection(&path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let values: HashMap<String, String> = submitted.iter().cloned().collect();
    let answer = match payload(c, &submitted) {
        Ok(p) => admin_api::call(&st.admin, Method::POST, &format!("/{}", c.path), p).await,
        Err((field, message)) => {
            let attempt = Attempt {
                values,
                errors: HashMap::from([(field, message)]),
                message: None,
            };
            return page(
                &st,
                &user,
                c,
                &ListParams::default(),
                attempt,
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    };
    if answer.status == StatusCode::CREATED {
        let name = ["name", "username"]
            .iter()
            .find_map(|k| answer.body[*k].as_str())
            .unwrap_or("it");
        let to = format!(
            "/{}?created={}",
            c.path,
            form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
        );
        return Redirect::to(&to).into_response();
    }
    page(
        &st,
        &user,
        c,
        &ListParams::default(),
        refused(c, &answer, values, "Not created"),
        StatusCode::BAD_REQUEST,
    )
    .await
}

/// The form again, with the admin API's field errors on their inputs and `outcome` ("Not
/// created") before its message.
fn refused(
    c: &Collection,
    answer: &Answer,
    values: HashMap<String, String>,
    outcome: &str,
) -> Attempt {
    let conflict = answer.status == StatusCode::CONFLICT;
    let errors: HashMap<String, String> = answer
        .field_errors()
        .into_iter()
        .map(|(k, v)| {
            let k = input_key(k.trim_end_matches("[]"));
            let input = c
                .entered_as
                .iter()
                .find(|(api, _)| *api == k)
                .map_or(k, |(_, form)| form);
            // A 409's fields are the key that is taken, with its value.
            let v = if conflict {
                "already taken".to_string()
            } else {
                v
            };
            (input.to_string(), v)
        })
        .collect();
    let message = Some(format!("{outcome}: {}", answer.message()));
    Attempt {
        values,
        errors,
        message,
    }
}

/// The form input an error field belongs to: a reference's own key (`service.name`,
/// `consumer.id`) is its one input.
fn input_key(field: &str) -> &str {
    match field.split_once('.') {
        Some((reference @ ("service" | "route" | "consumer"), _)) => reference,
        _ => field,
    }
}

/// What the edit form starts with: the entity's current values, under the form's keys.
fn current_values(c: &Collection, entity: &Value) -> HashMap<String, String> {
    c.form
        .iter()
        .filter_map(|f| {
            let value = f.key.split('.').try_fold(entity, |v, k| v.get(k))?;
            let shown = match (value, f.input) {
                (Value::Null, _) => return None,
                (Value::Object(m), _) if m.contains_key("id") => m["id"].as_str()?.to_string(),
                (Value::Object(_), Input::Json) => value.to_string(),
                (Value::Array(items), _) => items
                    .iter()
                    .map(|i| i.as_str().map_or(i.to_string(), String::from))
                    .collect::<Vec<_>>()
                    .join("\n"),
                (Value::String(s), _) => s.clone(),
                (other, _) => other.to_string(),
            };
            Some((f.key.to_string(), shown))
        })
        .collect()
}

pub async fn edit_form(
    State(st): State<Arc<ConsoleState>>,
    Extension(user): Extension<CurrentUser>,
    Path((path, id)): Path<(String, String)>,
) -> Response {
    let Some(c) = collection(&path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let entity = match changeable(&st, &user, &path, &id).await {
        Ok(e) => e,
        Err(page) => return page,
    };
    let mut values = current_values(c, &entity);
    if c.path == "services" {
        values.remove("url");
    }
    edit_page(
        &user,
        c,
        &id,
        Attempt {
            values,
            ..Attempt::default()
        },
        StatusCode::OK,
    )
}

fn edit_page(
    user: &CurrentUser,
    c: &'static Collection,
    id: &str,
    attempt: Attempt,
    status: StatusCode,
) -> Response {
    let body = entity_form(
        c,
        attempt,
        "Change",
        format!("/{}/{id}/edit", c.path),
        "Save",
    );
    let hint = view! { <p class="hint">"Fields left empty keep their value."</p> };
    (
        status,
        Html(layout::page(
            &format!("Edit {id}"),
            &user.0,
            view! { {hint} {body} },
        )),
    )
        .into_response()
}

pub async fn update(
    State(st): State<Arc<ConsoleState>>,
    Extension(user): Extension<CurrentUser>,
    Path((path, id)): Path<(String, String)>,
    Form(submitted): Form<Vec<(String, String)>>,
) -> Response {
    let Some(c) = collection(&path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let values: HashMap<String, String> = submitted.iter().cloned().collect();
    let answer = match payload(c, &submitted) {
        Ok(p) => admin_api::call(&st.admin, Method::PATCH, &format!("/{path}/{id}"), p).await,
        Err((field, message)) => {
            let attempt = Attempt {
                values,
                errors: HashMap::from([(field, message)]),
                message: None,
            };
            return edit_page(&user, c, &id, attempt, StatusCode::BAD_REQUEST);
        }
    };
    if answer.status == StatusCode::OK {
        return Redirect::to(&format!("/{path}")).into_response();
    }
    let attempt = refused(c, &answer, values, "Not saved");
    edit_page(&user, c, &id, attempt, StatusCode::BAD_REQUEST)
}

pub async fn confirm_delete(
    State(st): State<Arc<ConsoleState>>,
    Extension(user): Extension<CurrentUser>,
    Path((path, id)): Path<(String, String)>,
) -> Response {
    if collection(&path).is_none() {
        return StatusCode::NOT_FOUND.into_response();
    }
    if let Err(page) = changeable(&st, &user, &path, &id).await {
        return page;
    }
    let body = confirmation(
        &format!("/{path}/{id}/delete"),
        &format!("/{path}"),
        &format!("Delete {id} from {path}?"),
    );
    Html(layout::page("Delete", &user.0, body)).into_response()
}

/// A page that asks before deleting: its button posts to `action`.
pub fn confirmation(action: &str, back: &str, question: &str) -> impl IntoView + 'static {
    let (action, back, question) = (action.to_string(), back.to_string(), question.to_string());
    view! {
        <section class="panel">
            <p>{question}" This cannot be undone."</p>
            <form method="post" action=action class="inline">
                <button type="submit" class="danger">"Delete"</button>
                <a href=back>"Cancel"</a>
            </form>
        </section>
    }
}

pub async fn delete(
    State(st): State<Arc<ConsoleState>>,
    Path((path, id)): Path<(String, String)>,
) -> Response {
    if collection(&path).is_none() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let uri = format!("/{path}/{id}");
    match admin_api::call_ok(&st.admin, Method::DELETE, &uri, Payload::None).await {
        Ok(_) => Redirect::to(&format!("/{path}")).into_response(),
        Err(refused) => refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_references_errors_go_to_its_input() {
        assert_eq!(input_key("service.name"), "service");
        assert_eq!(input_key("consumer.id"), "consumer");
        assert_eq!(input_key("config.second"), "config.second");
    }

    #[test]
    fn form_lines_become_arrays_and_json_configs_become_json_bodies() {
        let plugins = collection("plugins").unwrap();
        let form = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let Ok(Payload::Form(pairs)) = payload(
            plugins,
            &form(&[
                ("name", "key-auth"),
                ("config.key_names", "apikey, x-key"),
                ("route", ""),
            ]),
        ) else {
            panic!("a form payload");
        };
        assert_eq!(
            pairs,
            form(&[
                ("name", "key-auth"),
                ("config.key_names[]", "apikey"),
                ("config.key_names[]", "x-key")
            ])
        );
        let Ok(Payload::Json(body)) = payload(
            plugins,
            &form(&[("other_name", "cors"), ("config", "{\"origins\": [\"*\"]}")]),
        ) else {
            panic!("a JSON payload");
        };
        assert_eq!(body["name"], "cors");
        assert_eq!(body["config"]["origins"][0], "*");
        assert!(payload(plugins, &form(&[("config", "[1]")])).is_err());
    }
}

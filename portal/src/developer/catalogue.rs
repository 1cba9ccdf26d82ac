//! What everyone can read: the front page listing the published APIs (private ones only for
//! logged-in developers), each API's reference page and OpenAPI document (JSON or YAML, whole
//! or one version), and search across APIs and operations.
use super::layout::{not_found, page, respond, unavailable};
use super::{proxy_url, PortalState, Visitor};
use crate::apis::document::{self, Request as DocRequest};
use crate::apis::reference::{self, KeyUse};
use crate::apis::{self, Api, Version};
use crate::web::markdown::to_safe_html;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;
use leptos::prelude::*;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use tollgate_gateway::admin::service_openapi::METHODS;
use tollgate_gateway::declarative::export::to_yaml;
use tollgate_gateway::store::portal::Plan;

/// What the key looks like in curl samples until the browser fills in the developer's own.
pub const KEY_PLACEHOLDER: &str = "YOUR_API_KEY";
const MAX_RESULTS: usize = 100;

#[derive(Deserialize, Default)]
pub struct VersionQuery {
    version: Option<String>,
}

pub async fn front_page(
    State(st): State<Arc<PortalState>>,
    Extension(visitor): Extension<Visitor>,
) -> Response {
    let apis = match published(&st, &visitor).await {
        Ok(a) => a,
        Err(e) => return unavailable(&visitor, e),
    };
    let intro = match &visitor.0 {
        Some(_) => view! { <p>"Browse the APIs, then get a key in " <a href="/apps">"your applications"</a>"."</p> }.into_any(),
        None => view! { <p><a href="/signup">"Sign up"</a>" to get an API key, or " <a href="/login">"log in"</a>"."</p> }.into_any(),
    };
    let cards = apis.into_iter().map(api_card).collect_view();
    Html(page(
        "APIs",
        &visitor,
        view! {
            {intro}
            <div class="catalogue">{cards}</div>
        },
    ))
    .into_response()
}

fn api_card(api: Api) -> impl IntoView {
    let href = format!("/apis/{}", api.slug);
    let versions = api
        .versions()
        .into_iter()
        .map(|v| version_link(&api, &v, false))
        .collect_view();
    let badge = api
        .listing
        .private
        .then(|| view! { <span class="badge">"private"</span> });
    // The description goes in raw only once ammonia's allow-list has cleaned it.
    view! {
        <article class="card api">
            <h2><a href=href>{api.listing.title.clone()}</a> {badge}</h2>
            <div class="markdown" inner_html=to_safe_html(&api.listing.description)></div>
            <p class="versions">{versions}</p>
        </article>
    }
}

/// The query naming version `label` (a header version's label may be any visible text).
fn version_query(label: &str) -> String {
    let label: String = form_urlencoded::byte_serialize(label.as_bytes()).collect();
    format!("?version={label}")
}

/// Where version `label`'s reference is.
fn version_href(api: &Api, label: &str) -> String {
    format!("/apis/{}{}", api.slug, version_query(label))
}

/// A link to one version's reference, marked when deprecated.
fn version_link(api: &Api, v: &Version, current: bool) -> impl IntoView {
    let link = version_href(api, &v.label);
    let deprecated = v.deprecation.is_some();
    let text = match deprecated {
        true => format!("{} (deprecated)", v.label),
        false => v.label.clone(),
    };
    view! {
        <a class="version" class:current=current class:deprecated-version=deprecated href=link>{text}</a>
    }
}

/// The API's versions side by side: how a request selects each, whether it is deprecated and
/// when it stops, and its reference.
fn versions_table(api: &Api, versions: &[Version]) -> Option<impl IntoView> {
    if versions.is_empty() {
        return None;
    }
    let rows = versions
        .iter()
        .map(|v| {
            let status = match &v.deprecation {
                None => "Current".to_string(),
                Some(d) => match &d.sunset_at {
                    Some(s) => format!("Deprecated since {}; stops on {s}", d.deprecated_at),
                    None => format!("Deprecated since {}", d.deprecated_at),
                },
            };
            let link = version_href(api, &v.label);
            view! {
                <tr>
                    <td><a href=link>{v.label.clone()}</a></td>
                    <td><code>{v.selector()}</code></td>
                    <td>{status}</td>
                </tr>
            }
        })
        .collect_view();
    Some(view! {
        <section class="panel wide" aria-labelledby="versions">
            <h2 id="versions">"Versions"</h2>
            <table class="versions-table">
                <thead><tr><th scope="col">"Version"</th><th scope="col">"Selected by"</th><th scope="col">"Status"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </section>
    })
}

/// The notices of the deprecated versions among `shown`, with the operator's words and link.
fn deprecation_notices(shown: &[Version]) -> impl IntoView {
    shown
        .iter()
        .filter_map(|v| v.deprecation.as_ref().map(|d| (v, d)))
        .map(|(v, d)| {
            let when = match &d.sunset_at {
                Some(s) => format!(" It stops working on {s}."),
                None => String::new(),
            };
            let more = d
                .link
                .clone()
                .map(|href| view! { " " <a href=href>"Migration guide"</a> });
            view! {
                <div class="notice deprecation" role="note">
                    <strong>{format!("Version {} is deprecated", v.label)}</strong>
                    {format!(" since {}.{when}", d.deprecated_at)}
                    {d.notice.clone().map(|n| view! { " " {n} })}
                    {more}
                </div>
            }
        })
        .collect_view()
}

/// Every API the visitor may see, fully loaded.
async fn published(st: &PortalState, visitor: &Visitor) -> Result<Vec<Api>, String> {
    let signed_in = visitor.0.is_some();
    let listings = apis::listings(&st.store, signed_in)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(listings.len());
    for (service, listing) in listings {
        let api = apis::assemble(&st.store, service, listing).await;
        out.push(api.map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// Every plan, for `document_of`.
async fn all_plans(st: &PortalState) -> Result<Vec<Plan>, String> {
    st.store.plans().await.map_err(|e| e.to_string())
}

/// The document of `api` as a visitor sees it, with those of `plans` that cover it.
fn document_of(
    st: &PortalState,
    api: &Api,
    plans: &[Plan],
    headers: &HeaderMap,
    version: Option<&str>,
) -> Value {
    let id = api.service_id.to_string();
    let covering: Vec<Plan> = plans
        .iter()
        .filter(|p| p.services.is_empty() || p.services.contains(&id))
        .cloned()
        .collect();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let server = proxy_url(&st.config, host);
    document::build(&DocRequest {
        api,
        plans: &covering,
        server: &server,
        version,
    })
}

/// The API at `slug` and its document, or the response to send instead.
async fn load_document(
    st: &PortalState,
    visitor: &Visitor,
    slug: &str,
    headers: &HeaderMap,
    version: Option<&str>,
) -> Result<(Api, Value), Response> {
    let api = match apis::load(&st.store, slug, visitor.0.is_some()).await {
        Ok(Some(a)) => a,
        Ok(None) => return Err(not_found(visitor)),
        Err(e) => return Err(unavailable(visitor, e.to_string())),
    };
    let version = version.filter(|v| !v.is_empty());
    if version.is_some_and(|v| !api.versions().iter().any(|x| x.label == v)) {
        return Err(not_found(visitor));
    }
    let plans = all_plans(st).await.map_err(|e| unavailable(visitor, e))?;
    let doc = document_of(st, &api, &plans, headers, version);
    Ok((api, doc))
}

/// How to call an API guarded by oauth2 (its token endpoint, with a client-credentials sample)
/// or jwt (what a token carries), for applications with those credentials.
fn other_auth(api: &Api, server: &str) -> Option<impl IntoView> {
    if api.oauth2.is_none() && !api.jwt {
        return None;
    }
    let oauth2 = api.oauth2.as_ref().map(|o| {
        let endpoint = format!("{server}{}", o.token_path);
        let sample = o.client_credentials.then(|| {
            let curl = format!(
                "curl -X POST {endpoint} \\\n  -d grant_type=client_credentials \\\n  -d client_id=YOUR_CLIENT_ID -d client_secret=YOUR_CLIENT_SECRET"
            );
            view! {
                <p>"With your application's client id and secret:"</p>
                <pre><code id="token-sample">{curl}</code></pre>
            }
        });
        view! {
            <h3>"OAuth2"</h3>
            <p>"Token endpoint: " <code id="token-endpoint">{endpoint.clone()}</code></p>
            {sample}
            <p>"The answer's " <code>"access_token"</code> " goes in " <code>"Authorization: Bearer <token>"</code> " until it expires (" <code>"expires_in"</code> " seconds)."</p>
        }
    });
    let jwt = api.jwt.then(|| view! {
        <h3>"JWT"</h3>
        <p>"Sign a token with your private key (the algorithm your application's JWT key shows), put the key in its " <code>"iss"</code> " claim and an " <code>"exp"</code> ", and send " <code>"Authorization: Bearer <token>"</code> "."</p>
    });
    Some(view! {
        <section class="panel wide" aria-labelledby="authentication">
            <h2 id="authentication">"Authentication"</h2>
            {oauth2}
            {jwt}
        </section>
    })
}

pub async fn reference(
    State(st): State<Arc<PortalState>>,
    Extension(visitor): Extension<Visitor>,
    Path(slug): Path<String>,
    Query(q): Query<VersionQuery>,
    headers: HeaderMap,
) -> Response {
    let (api, doc) = match load_document(&st, &visitor, &slug, &headers, q.version.as_deref()).await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let key = api.key_auth.as_ref().map(|k| KeyUse {
        in_header: k.in_header,
        name: k.names.first().cloned().unwrap_or_else(|| "apikey".into()),
        value: KEY_PLACEHOLDER.into(),
    });
    let html = match reference::build(&doc, key.as_ref()).render() {
        Ok(h) => h,
        Err(e) => return unavailable(&visitor, e.to_string()),
    };
    let suffix = q.version.as_deref().map(version_query).unwrap_or_default();
    let all_versions = api.versions();
    let current = |v: &Version| q.version.as_deref() == Some(v.label.as_str());
    let versions = all_versions
        .iter()
        .map(|v| version_link(&api, v, current(v)))
        .collect_view();
    let shown: Vec<Version> = match &q.version {
        Some(_) => all_versions
            .iter()
            .filter(|v| current(v))
            .cloned()
            .collect(),
        None => all_versions.clone(),
    };
    let notices = deprecation_notices(&shown);
    let table = versions_table(&api, &all_versions);
    let key_hint = match (&api.key_auth, &visitor.0) {
        (None, _) => None,
        (Some(_), Some(_)) => Some(view! { <p class="hint">"Samples use " <code>{KEY_PLACEHOLDER}</code>"; a key created or rotated in this browser is filled in. Keys are stored hashed, so the portal itself cannot show them again."</p> }.into_any()),
        (Some(_), None) => Some(view! { <p class="hint">"This API needs a key: " <a href="/signup">"sign up"</a>" and create an application to get one."</p> }.into_any()),
    };
    let server = proxy_url(
        &st.config,
        headers.get(header::HOST).and_then(|h| h.to_str().ok()),
    );
    let other_auth = other_auth(&api, &server);
    // `html` goes in raw: askama escapes every value of the reference except the Markdown
    // fields, which `web::markdown::to_safe_html` ran through ammonia's allow-list first.
    let json_link = format!("/apis/{}/openapi.json{suffix}", api.slug);
    let yaml_link = format!("/apis/{}/openapi.yaml{suffix}", api.slug);
    let all_link = format!("/apis/{}", api.slug);
    Html(page(
        &api.listing.title,
        &visitor,
        view! {
            <p class="doc-links">
                <a href=all_link>"All versions"</a> {versions}
                " · OpenAPI: " <a href=json_link>"JSON"</a> " " <a href=yaml_link>"YAML"</a>
            </p>
            {notices}
            {table}
            {key_hint}
            {other_auth}
            <div inner_html=html></div>
        },
    ))
    .into_response()
}

/// `/apis/{slug}/openapi.json` or `/apis/{slug}/openapi.yaml`.
pub async fn openapi(
    State(st): State<Arc<PortalState>>,
    Extension(visitor): Extension<Visitor>,
    Path((slug, file)): Path<(String, String)>,
    Query(q): Query<VersionQuery>,
    headers: HeaderMap,
) -> Response {
    let yaml = match file.as_str() {
        "openapi.json" => false,
        "openapi.yaml" => true,
        _ => return not_found(&visitor),
    };
    match load_document(&st, &visitor, &slug, &headers, q.version.as_deref()).await {
        Ok((_, doc)) if yaml => {
            ([(header::CONTENT_TYPE, "application/yaml")], to_yaml(&doc)).into_response()
        }
        Ok((_, doc)) => axum::Json(doc).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
}

/// One search result: where it links, what it is called, what it is.
struct Hit {
    href: String,
    title: String,
    detail: String,
}

fn matches(needle: &str, fields: &[&str]) -> bool {
    fields.iter().any(|f| f.to_lowercase().contains(needle))
}

/// The APIs and operations that mention `needle` (lower case).
fn search_document(api: &Api, doc: &Value, needle: &str, out: &mut Vec<Hit>) {
    if matches(needle, &[&api.listing.title, &api.listing.description]) {
        out.push(Hit {
            href: format!("/apis/{}", api.slug),
            title: api.listing.title.clone(),
            detail: "API".into(),
        });
    }
    let empty = serde_json::Map::new();
    for (path, item) in doc["paths"].as_object().unwrap_or(&empty) {
        for method in METHODS {
            let Some(op) = item.get(*method) else {
                continue;
            };
            let text = |k: &str| op[k].as_str().unwrap_or("").to_string();
            if matches(
                needle,
                &[
                    path,
                    &text("summary"),
                    &text("description"),
                    &text("operationId"),
                ],
            ) {
                let anchor = op["operationId"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| format!("{method}-{path}"));
                out.push(Hit {
                    href: format!("/apis/{}#{anchor}", api.slug),
                    title: format!("{} {path}", method.to_uppercase()),
                    detail: format!("{} · {}", api.listing.title, text("summary")),
                });
            }
        }
    }
}

pub async fn search(
    State(st): State<Arc<PortalState>>,
    Extension(visitor): Extension<Visitor>,
    Query(q): Query<SearchQuery>,
    headers: HeaderMap,
) -> Response {
    let query = q.q.unwrap_or_default().trim().to_string();
    let needle = query.to_lowercase();
    if needle.chars().count() < 2 {
        return respond(
            StatusCode::OK,
            "Search",
            &visitor,
            view! { <p class="hint">"Type at least two characters."</p> },
        );
    }
    let (apis, plans) = match (published(&st, &visitor).await, all_plans(&st).await) {
        (Ok(a), Ok(p)) => (a, p),
        (Err(e), _) | (_, Err(e)) => return unavailable(&visitor, e),
    };
    let mut hits = Vec::new();
    for api in &apis {
        let doc = document_of(&st, api, &plans, &headers, None);
        search_document(api, &doc, &needle, &mut hits);
    }
    let total = hits.len();
    hits.truncate(MAX_RESULTS);
    let rows = hits
        .into_iter()
        .map(|h| {
            view! {
                <li><a href=h.href>{h.title}</a> <span class="hint">{h.detail}</span></li>
            }
        })
        .collect_view();
    respond(
        StatusCode::OK,
        "Search",
        &visitor,
        view! {
            <p>{format!("{total} results for “{query}”")}</p>
            <ul class="results">{rows}</ul>
        },
    )
}

//! The developer portal on `TOLLGATE_PORTAL_LISTEN`: the published APIs and their reference
//! documentation for everyone; sign-up, applications, keys and usage for developers.
//! Every page works without JavaScript. Form posts must come from the portal's own origin;
//! a developer's pages need a session, and a developer reaches only their own applications.
pub(crate) mod accounts;
pub(crate) mod applications;
mod catalogue;
pub(crate) mod credentials;
mod layout;
mod usage;

use crate::web::origin::refuse_cross_origin;
use crate::web::page;
use crate::web::sessions::StoreSessions;
use crate::web::throttle::Throttle;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tollgate_analytics::query::Queries;
use tollgate_gateway::store::portal::Developer;
use tollgate_gateway::store::Store;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

const STYLESHEET: &str = concat!(
    include_str!("../../../assets/console.css"),
    include_str!("../../../assets/portal.css")
);
const SCRIPT: &str = include_str!("../../../assets/portal.js");

/// The session key holding the developer's id.
const DEVELOPER: &str = "developer";

/// How the portal is run.
#[derive(Debug, Clone, Default)]
pub struct PortalConfig {
    /// New developers wait for an operator's approval before they can log in.
    pub approval_required: bool,
    /// The proxy's public URL for documents and curl samples; when unset, the portal's own
    /// host name with `proxy_port`.
    pub proxy_url: Option<String>,
    pub proxy_port: u16,
    /// Cookies only over HTTPS.
    pub secure_cookies: bool,
}

pub struct PortalState {
    pub store: Store,
    pub analytics: Option<Arc<dyn Queries>>,
    /// The admin API, called in process to create consumers, keys and plan plugins.
    admin: Router,
    config: PortalConfig,
    /// Wrong passwords per email.
    login_failures: Throttle,
    /// Log-in attempts per client address.
    logins: Throttle,
    /// Sign-ups per client address.
    signups: Throttle,
}

impl PortalState {
    pub fn new(
        store: Store,
        analytics: Option<Arc<dyn Queries>>,
        admin: Router,
        config: PortalConfig,
    ) -> PortalState {
        PortalState {
            store,
            analytics,
            admin,
            config,
            login_failures: Throttle::new(5, Duration::from_secs(60)),
            logins: Throttle::new(30, Duration::from_secs(60)),
            signups: Throttle::new(10, Duration::from_secs(3600)),
        }
    }
}

/// The proxy's base URL as a visitor of this portal reaches it: the configured one, or the
/// portal's host (from `Host`) with the proxy's port.
fn proxy_url(config: &PortalConfig, req_host: Option<&str>) -> String {
    if let Some(url) = &config.proxy_url {
        return url.trim_end_matches('/').to_string();
    }
    let host = req_host.unwrap_or("127.0.0.1");
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    format!("http://{name}:{}", config.proxy_port)
}

/// The logged-in developer, when there is one; put in every request by the guard.
#[derive(Clone)]
pub struct Visitor(pub Option<Developer>);

/// The client's address (the TCP peer), what sign-ups and log-ins are limited by.
#[derive(Clone)]
pub struct ClientAddr(pub String);

pub fn router(state: Arc<PortalState>) -> Router {
    let sessions = SessionManagerLayer::new(StoreSessions(state.store.clone()))
        .with_name("tollgate_portal")
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(state.config.secure_cookies)
        .with_expiry(Expiry::OnInactivity(time::Duration::hours(12)));
    Router::new()
        .route("/", get(catalogue::front_page))
        .route("/search", get(catalogue::search))
        .route("/apis/{slug}", get(catalogue::reference))
        .route("/apis/{slug}/{file}", get(catalogue::openapi))
        .route("/signup", get(accounts::show_signup).post(accounts::signup))
        .route("/login", get(accounts::show_login).post(accounts::login))
        .route("/logout", post(accounts::logout))
        .route(
            "/account",
            get(accounts::show_account).post(accounts::change_password),
        )
        .route("/apps", get(applications::list).post(applications::create))
        .route("/apps/{id}", get(applications::show))
        .route("/apps/{id}/keys", post(applications::rotate))
        .route("/apps/{id}/secret", post(applications::new_secret))
        .route("/apps/{id}/keys/{key}/revoke", post(applications::revoke))
        .route("/apps/{id}/delete", post(applications::delete))
        .route("/apps/{id}/usage", get(usage::show))
        .route("/assets/portal.css", page::asset(page::CSS, STYLESHEET))
        .route("/assets/portal.js", page::asset(page::JAVASCRIPT, SCRIPT))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(middleware::from_fn(refuse_cross_origin))
        .layer(middleware::from_fn(crate::web::page::security_headers))
        .layer(sessions)
        .with_state(state)
}

/// Whether a path is a developer's own (applications, account): those need a session.
fn private_path(path: &str) -> bool {
    path == "/apps" || path.starts_with("/apps/") || path == "/account"
}

/// Finds the logged-in developer, and sends visitors without a session from a developer's
/// pages to the login form (and back after it). Cross-origin posts were refused before.
async fn guard(
    axum::extract::State(st): axum::extract::State<Arc<PortalState>>,
    session: Session,
    mut req: Request,
    next: Next,
) -> Response {
    let developer = match session.get::<String>(DEVELOPER).await {
        Ok(Some(id)) => match st.store.developer(&id).await {
            Ok(Some(d)) if d.status == "active" => Some(d),
            Ok(_) => {
                // Suspended or deleted since they logged in: the session ends here.
                let _ = session.flush().await;
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "portal: store unavailable");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the config store is unavailable",
                )
                    .into_response();
            }
        },
        _ => None,
    };
    let path = req.uri().path().to_string();
    if developer.is_none() && private_path(&path) {
        let target = req
            .uri()
            .path_and_query()
            .map_or(path.clone(), |p| p.to_string());
        let next: String = form_urlencoded::byte_serialize(target.as_bytes()).collect();
        return Redirect::to(&format!("/login?next={next}")).into_response();
    }
    let addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string());
    req.extensions_mut().insert(ClientAddr(addr));
    req.extensions_mut().insert(Visitor(developer));
    next.run(req).await
}

/// Where to go after logging in: a path on this site, never another site (`//evil`,
/// `https://evil`, `/\evil` all fall back to the applications page).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.chars().any(|c| c.is_control()) =>
        {
            n.to_string()
        }
        _ => "/apps".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(
            safe_next(Some("/apps/1/usage?range=1h")),
            "/apps/1/usage?range=1h"
        );
        for evil in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "evil",
            "/\r\nx",
        ] {
            assert_eq!(safe_next(Some(evil)), "/apps", "{evil}");
        }
        assert_eq!(safe_next(None), "/apps");
    }

    #[test]
    fn the_proxy_url_follows_the_portal_host_unless_configured() {
        let mut config = PortalConfig {
            proxy_port: 8000,
            ..PortalConfig::default()
        };
        assert_eq!(
            proxy_url(&config, Some("dev.example:8003")),
            "http://dev.example:8000"
        );
        assert_eq!(proxy_url(&config, Some("[::1]:8003")), "http://[::1]:8000");
        assert_eq!(proxy_url(&config, None), "http://127.0.0.1:8000");
        config.proxy_url = Some("https://api.example/".into());
        assert_eq!(
            proxy_url(&config, Some("dev.example")),
            "https://api.example"
        );
    }
}

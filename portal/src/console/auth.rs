//! Console logins: argon2id password hashes in the store, the first user created at start-up,
//! and a lockout after five wrong passwords in a minute.
use super::layout;
use super::ConsoleState;
use crate::web::passwords;
use crate::web::sessions;
use crate::web::throttle::Throttle;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use leptos::prelude::*;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tollgate_gateway::store::{Store, StoreError};
use tower_sessions::Session;

/// The session key holding the logged-in user's name.
pub const USER: &str = "user";
const LOCKOUT_FAILURES: usize = 5;
const LOCKOUT_WINDOW: Duration = Duration::from_secs(60);

/// Creates user `admin` when the store has no console user: with `password`, or a generated
/// one written once to the log (the only time it is shown).
pub async fn bootstrap_admin(store: &Store, password: Option<&str>) -> Result<(), StoreError> {
    if store.console_user_count().await? > 0 {
        return Ok(());
    }
    let generated = password.is_none().then(generate_password);
    let chosen = password.or(generated.as_deref()).unwrap_or_default();
    let hash = passwords::hash(chosen).map_err(StoreError::Corrupt)?;
    if store
        .add_console_user("admin", &hash, tollgate_analytics::unix_now())
        .await?
    {
        match &generated {
            Some(p) => {
                tracing::warn!("console user 'admin' created; its password, shown only now: {p}")
            }
            None => {
                tracing::info!("console user 'admin' created with TOLLGATE_CONSOLE_ADMIN_PASSWORD")
            }
        }
    }
    Ok(())
}

fn generate_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Five wrong passwords for one username in a minute lock it for the rest of that minute.
pub fn lockout() -> Throttle {
    Throttle::new(LOCKOUT_FAILURES, LOCKOUT_WINDOW)
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
}

#[derive(Deserialize)]
pub struct LoginPage {
    error: Option<String>,
}

pub(super) fn login_page(status: StatusCode, error: Option<String>) -> Response {
    let body = view! {
        <main class="login">
            <form method="post" action="/login" class="card">
                <h1>"Tollgate console"</h1>
                {error.map(|e| view! { <p class="error" role="alert">{e}</p> })}
                <label>"Username" <input name="username" autocomplete="username" required/></label>
                <label>"Password" <input name="password" type="password" autocomplete="current-password" required/></label>
                <button type="submit">"Log in"</button>
            </form>
        </main>
    };
    (status, Html(layout::document("Log in", body))).into_response()
}

pub async fn show_login(Query(q): Query<LoginPage>) -> Response {
    login_page(StatusCode::OK, q.error)
}

pub async fn login(
    State(st): State<Arc<ConsoleState>>,
    session: Session,
    Form(f): Form<LoginForm>,
) -> Response {
    if st.lockout.exhausted(&f.username) {
        let message = "Too many wrong passwords: try again in a minute.".to_string();
        return login_page(StatusCode::TOO_MANY_REQUESTS, Some(message));
    }
    let hash = match st.store.console_user(&f.username).await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "console login: store unavailable");
            return login_page(
                StatusCode::SERVICE_UNAVAILABLE,
                Some("The config store is unavailable.".into()),
            );
        }
    };
    if !hash.is_some_and(|h| passwords::verify(&f.password, &h)) {
        st.lockout.hit(&f.username);
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("Wrong username or password.".into()),
        );
    }
    st.lockout.clear(&f.username);
    if sessions::log_in(&session, USER, &f.username).await.is_err() {
        return login_page(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("Sessions are unavailable.".into()),
        );
    }
    Redirect::to("/").into_response()
}

pub async fn logout(session: Session) -> Redirect {
    let _ = session.flush().await;
    Redirect::to("/login")
}

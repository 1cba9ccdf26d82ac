//! Developer accounts: sign-up with email and password (argon2id), optional approval by an
//! operator, log-in and log-out with a session, and password change. Sign-ups are limited per
//! client address; log-ins per client address and, for wrong passwords, per email.
use super::layout::{respond, unavailable};
use super::{safe_next, ClientAddr, PortalState, Visitor, DEVELOPER};
use crate::web::passwords;
use crate::web::sessions;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use leptos::prelude::*;
use serde::Deserialize;
use std::sync::{Arc, OnceLock};
use tollgate_gateway::store::portal::{Developer, DeveloperColumn};
use tower_sessions::Session;

const MIN_PASSWORD: usize = 10;
const MAX_PASSWORD: usize = 256;

#[derive(Deserialize)]
pub struct Credentials {
    email: String,
    password: String,
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Lower-cased and trimmed, when it looks like an address.
pub(crate) fn normalized_email(email: &str) -> Option<String> {
    let e = email.trim().to_lowercase();
    let (local, domain) = e.split_once('@')?;
    let ok = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && e.len() <= 254
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then_some(e)
}

pub(crate) fn password_problem(p: &str) -> Option<String> {
    let n = p.chars().count();
    (n < MIN_PASSWORD)
        .then(|| format!("Use at least {MIN_PASSWORD} characters."))
        .or_else(|| (n > MAX_PASSWORD).then(|| format!("Use at most {MAX_PASSWORD} characters.")))
}

fn form(
    action: &'static str,
    button: &'static str,
    error: Option<String>,
    next: Option<String>,
    email: String,
) -> impl IntoView {
    let new_password = if action == "/signup" {
        "new-password"
    } else {
        "current-password"
    };
    view! {
        <form method="post" action=action class="card narrow">
            {error.map(|e| view! { <p class="error" role="alert">{e}</p> })}
            {next.map(|n| view! { <input type="hidden" name="next" value=n/> })}
            <label>"Email" <input name="email" type="email" autocomplete="email" value=email required/></label>
            <label>"Password" <input name="password" type="password" autocomplete=new_password required/></label>
            <button type="submit">{button}</button>
        </form>
    }
}

fn signup_page(
    status: StatusCode,
    visitor: &Visitor,
    error: Option<String>,
    email: String,
) -> Response {
    respond(
        status,
        "Sign up",
        visitor,
        view! {
            <p>"Create an account to get API keys for the APIs published here."</p>
            {form("/signup", "Sign up", error, None, email)}
            <p>"Already have an account? " <a href="/login">"Log in"</a></p>
        },
    )
}

fn login_page(
    status: StatusCode,
    visitor: &Visitor,
    error: Option<String>,
    next: Option<String>,
    email: String,
) -> Response {
    respond(
        status,
        "Log in",
        visitor,
        view! {
            {form("/login", "Log in", error, next, email)}
            <p>"No account yet? " <a href="/signup">"Sign up"</a></p>
        },
    )
}

pub async fn show_signup(Extension(visitor): Extension<Visitor>) -> Response {
    signup_page(StatusCode::OK, &visitor, None, String::new())
}

pub async fn show_login(
    Extension(visitor): Extension<Visitor>,
    Query(q): Query<NextQuery>,
) -> Response {
    login_page(StatusCode::OK, &visitor, None, q.next, String::new())
}

pub async fn signup(
    State(st): State<Arc<PortalState>>,
    Extension(visitor): Extension<Visitor>,
    Extension(addr): Extension<ClientAddr>,
    Form(f): Form<Credentials>,
) -> Response {
    if st.signups.exhausted(&addr.0) {
        return signup_page(
            StatusCode::TOO_MANY_REQUESTS,
            &visitor,
            Some("Too many sign-ups from your address: try again later.".into()),
            f.email,
        );
    }
    st.signups.hit(&addr.0);
    let Some(email) = normalized_email(&f.email) else {
        return signup_page(
            StatusCode::BAD_REQUEST,
            &visitor,
            Some("Enter a valid email address.".into()),
            f.email,
        );
    };
    if let Some(problem) = password_problem(&f.password) {
        return signup_page(StatusCode::BAD_REQUEST, &visitor, Some(problem), email);
    }
    let Ok(hash) = passwords::hash(&f.password) else {
        return unavailable(&visitor, "password hashing failed".into());
    };
    let developer = Developer {
        id: uuid::Uuid::new_v4().to_string(),
        email: email.clone(),
        password_hash: hash,
        status: if st.config.approval_required {
            "pending"
        } else {
            "active"
        }
        .into(),
        created_at: tollgate_analytics::unix_now(),
    };
    // The answer is the same whether the email was new or had an account already (both paid
    // for the hash above), so sign-up tells nobody which emails have accounts here.
    match st.store.add_developer(&developer).await {
        Ok(true) => tracing::info!(developer = %developer.id, "portal: developer signed up"),
        Ok(false) => tracing::info!("portal: sign-up for an email that has an account"),
        Err(e) => return unavailable(&visitor, e.to_string()),
    }
    let next_step = if st.config.approval_required {
        "If this email had no account here, it has one now, which awaits an operator's approval: you can log in once it is approved."
    } else {
        "If this email had no account here, it has one now: log in with it below."
    };
    respond(
        StatusCode::OK,
        "Thanks for signing up",
        &visitor,
        view! {
            <p class="notice" role="status">{next_step}</p>
            {form("/login", "Log in", None, None, email)}
        },
    )
}

/// Logs the developer in (see `sessions::log_in`) and sends them on to `to`.
async fn start_session(
    session: &Session,
    developer: &str,
    visitor: &Visitor,
    to: &str,
) -> Response {
    if sessions::log_in(session, DEVELOPER, developer)
        .await
        .is_err()
    {
        return unavailable(visitor, "sessions are unavailable".into());
    }
    Redirect::to(to).into_response()
}

/// A hash to check wrong emails against, so a missing account takes as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| passwords::hash("decoy password for unknown emails").unwrap_or_default())
}

pub async fn login(
    State(st): State<Arc<PortalState>>,
    Extension(visitor): Extension<Visitor>,
    Extension(addr): Extension<ClientAddr>,
    session: Session,
    Form(f): Form<Credentials>,
) -> Response {
    let email = normalized_email(&f.email).unwrap_or_default();
    if st.login_failures.exhausted(&email) || st.logins.exhausted(&addr.0) {
        return login_page(
            StatusCode::TOO_MANY_REQUESTS,
            &visitor,
            Some("Too many attempts: try again in a minute.".into()),
            f.next,
            f.email,
        );
    }
    st.logins.hit(&addr.0);
    let developer = match st.store.developer_by_email(&email).await {
        Ok(d) => d,
        Err(e) => return unavailable(&visitor, e.to_string()),
    };
    let hash = developer
        .as_ref()
        .map_or(decoy_hash(), |d| d.password_hash.as_str());
    let matches = passwords::verify(&f.password, hash);
    let Some(developer) = developer.filter(|_| matches) else {
        st.login_failures.hit(&email);
        return login_page(
            StatusCode::UNAUTHORIZED,
            &visitor,
            Some("Wrong email or password.".into()),
            f.next,
            f.email,
        );
    };
    let refusal = match developer.status.as_str() {
        "active" => None,
        "pending" => Some("Your account awaits an operator's approval."),
        _ => Some("Your account is suspended."),
    };
    if let Some(r) = refusal {
        return login_page(
            StatusCode::FORBIDDEN,
            &visitor,
            Some(r.into()),
            f.next,
            f.email,
        );
    }
    st.login_failures.clear(&email);
    start_session(
        &session,
        &developer.id,
        &visitor,
        &safe_next(f.next.as_deref()),
    )
    .await
}

pub async fn logout(session: Session) -> Redirect {
    let _ = session.flush().await;
    Redirect::to("/")
}

#[derive(Deserialize)]
pub struct PasswordChange {
    current: String,
    new: String,
}

fn account_page(
    status: StatusCode,
    visitor: &Visitor,
    message: Option<(bool, String)>,
) -> Response {
    let email = visitor
        .0
        .as_ref()
        .map(|d| d.email.clone())
        .unwrap_or_default();
    respond(
        status,
        "Your account",
        visitor,
        view! {
            <p>"Logged in as " <strong>{email}</strong></p>
            <form method="post" action="/account" class="card narrow">
                <h2>"Change password"</h2>
                {message.map(|(ok, m)| view! { <p class=if ok { "notice" } else { "error" } role="alert">{m}</p> })}
                <label>"Current password" <input name="current" type="password" autocomplete="current-password" required/></label>
                <label>"New password" <input name="new" type="password" autocomplete="new-password" required/></label>
                <button type="submit">"Change password"</button>
            </form>
        },
    )
}

pub async fn show_account(Extension(visitor): Extension<Visitor>) -> Response {
    account_page(StatusCode::OK, &visitor, None)
}

pub async fn change_password(
    State(st): State<Arc<PortalState>>,
    Extension(visitor): Extension<Visitor>,
    session: Session,
    Form(f): Form<PasswordChange>,
) -> Response {
    let Some(dev) = visitor.0.clone() else {
        return Redirect::to("/login").into_response();
    };
    if !passwords::verify(&f.current, &dev.password_hash) {
        return account_page(
            StatusCode::UNAUTHORIZED,
            &visitor,
            Some((false, "The current password is wrong.".into())),
        );
    }
    if let Some(problem) = password_problem(&f.new) {
        return account_page(StatusCode::BAD_REQUEST, &visitor, Some((false, problem)));
    }
    let Ok(hash) = passwords::hash(&f.new) else {
        return unavailable(&visitor, "password hashing failed".into());
    };
    match st
        .store
        .update_developer(&dev.id, DeveloperColumn::PasswordHash, &hash)
        .await
    {
        Ok(_) => {}
        Err(e) => return unavailable(&visitor, e.to_string()),
    }
    let _ = session.cycle_id().await;
    account_page(
        StatusCode::OK,
        &visitor,
        Some((true, "Your password is changed.".into())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_and_normalized() {
        assert_eq!(
            normalized_email(" Dev@Example.COM ").as_deref(),
            Some("dev@example.com")
        );
        for bad in [
            "",
            "dev",
            "@example.com",
            "dev@",
            "dev@example",
            "a b@example.com",
            "dev@.example.com",
        ] {
            assert_eq!(normalized_email(bad), None, "{bad}");
        }
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(password_problem("short").is_some());
        assert!(password_problem("long enough pass").is_none());
    }
}

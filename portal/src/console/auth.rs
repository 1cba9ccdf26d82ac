//! Console logins: argon2id password hashes in the store, the first user created at start-up,
//! and throttling that stops guessing without handing anyone a way to lock the admin out.
//!
//! Wrong passwords are counted per client address (ten a minute, then that address waits) and
//! per known user (five a minute lock the user). A locked user's correct password still gets
//! in from an address that user logged in from before, or from anywhere once the lock's
//! back-off has passed since the last wrong password, so a stranger guessing cannot keep the
//! admin out. Unknown usernames count against the address only (they cannot fill the table),
//! and are checked against a decoy hash, so that a wrong user takes as long as a wrong
//! password (no username oracle).
use super::layout;
use super::ConsoleState;
use crate::web::passwords;
use crate::web::sessions;
use crate::web::throttle::Throttle;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use leptos::prelude::*;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tollgate_gateway::store::Store;
use tower_sessions::Session;

/// The session key holding the logged-in user's name.
pub const USER: &str = "user";
const LOCKOUT_FAILURES: usize = 5;
const LOCKOUT_WINDOW: Duration = Duration::from_secs(60);
/// Wrong passwords one client address may try in `LOCKOUT_WINDOW`.
const ADDRESS_FAILURES: usize = 10;
/// How long after a locked user's last wrong password their correct one gets in from an
/// address they have not logged in from.
const LOCKED_BACKOFF: Duration = Duration::from_secs(10);
/// Addresses remembered per user as ones they logged in from.
const TRUSTED_PER_USER: usize = 16;

/// Creates user `admin` when the store has no console user: with `password`, or a generated
/// one written to `PASSWORD_FILE` in `data_dir` (mode 0600) and never logged: logs are
/// collected and kept, and the operator deletes the file once they have logged in. The file
/// is written before the user is created, so a password is never lost.
pub async fn bootstrap_admin(
    store: &Store,
    password: Option<&str>,
    data_dir: &std::path::Path,
) -> std::io::Result<()> {
    let store_error = |e: tollgate_gateway::store::StoreError| std::io::Error::other(e);
    if store.console_user_count().await.map_err(store_error)? > 0 {
        return Ok(());
    }
    let generated = password.is_none().then(generate_password);
    let chosen = password.or(generated.as_deref()).unwrap_or_default();
    let hash = passwords::hash(chosen).map_err(std::io::Error::other)?;
    let file = data_dir.join(PASSWORD_FILE);
    if let Some(p) = &generated {
        write_private(&file, p)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", file.display())))?;
    }
    let created = store
        .add_console_user("admin", &hash, tollgate_analytics::unix_now())
        .await
        .map_err(store_error)?;
    match (created, generated.is_some()) {
        (true, true) => tracing::warn!(
            "console user 'admin' created; its password is in {} (mode 0600): delete the file once you have logged in",
            file.display()
        ),
        (true, false) => {
            tracing::info!("console user 'admin' created with TOLLGATE_CONSOLE_ADMIN_PASSWORD")
        }
        // Another node created it meanwhile: this password is not the admin's.
        (false, true) => std::fs::remove_file(&file)?,
        (false, false) => {}
    }
    Ok(())
}

/// Where the generated password of the first console user is written.
pub const PASSWORD_FILE: &str = "console-admin-password";

/// Writes `text` to a new file readable by its owner only.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")
}

fn generate_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The login throttles (see the module's doc).
pub struct Lockout {
    by_user: Throttle,
    by_address: Throttle,
    /// Per user, the addresses they logged in from (the latest `TRUSTED_PER_USER`).
    trusted: std::sync::Mutex<std::collections::HashMap<String, Vec<IpAddr>>>,
}

impl Default for Lockout {
    fn default() -> Lockout {
        Lockout {
            by_user: Throttle::new(LOCKOUT_FAILURES, LOCKOUT_WINDOW),
            by_address: Throttle::new(ADDRESS_FAILURES, LOCKOUT_WINDOW),
            trusted: Default::default(),
        }
    }
}

impl Lockout {
    fn trusted(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Vec<IpAddr>>> {
        self.trusted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a correct password for a locked `user` from `addr` gets in.
    fn lets_through(&self, user: &str, addr: IpAddr) -> bool {
        self.trusted().get(user).is_some_and(|a| a.contains(&addr))
            || self
                .by_user
                .since_last(user)
                .is_none_or(|d| d >= LOCKED_BACKOFF)
    }

    fn failed(&self, user: Option<&str>, addr: IpAddr) {
        self.by_address.hit(&addr.to_string());
        if let Some(user) = user {
            self.by_user.hit(user);
        }
    }

    fn succeeded(&self, user: &str, addr: IpAddr) {
        self.by_user.clear(user);
        let mut trusted = self.trusted();
        let list = trusted.entry(user.to_string()).or_default();
        list.retain(|a| *a != addr);
        list.push(addr);
        if list.len() > TRUSTED_PER_USER {
            list.remove(0);
        }
    }
}

/// A hash to check unknown usernames against, so that they take as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| passwords::hash("decoy password for unknown users").unwrap_or_default())
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
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: Session,
    Form(f): Form<LoginForm>,
) -> Response {
    let (lockout, addr) = (&st.lockout, peer.ip());
    let too_many = || {
        let message = "Too many wrong passwords: try again in a minute.".to_string();
        login_page(StatusCode::TOO_MANY_REQUESTS, Some(message))
    };
    if lockout.by_address.exhausted(&addr.to_string()) {
        return too_many();
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
    let known = hash.is_some();
    let correct = passwords::verify(&f.password, hash.as_deref().unwrap_or(decoy_hash())) && known;
    let locked = known && lockout.by_user.exhausted(&f.username);
    if !correct {
        lockout.failed(known.then_some(f.username.as_str()), addr);
        if locked {
            return too_many();
        }
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("Wrong username or password.".into()),
        );
    }
    if locked && !lockout.lets_through(&f.username, addr) {
        return too_many();
    }
    lockout.succeeded(&f.username, addr);
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

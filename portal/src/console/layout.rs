//! The console's page shell: the document, its stylesheet, and the sidebar.
use crate::web::page::{self, Head};
use leptos::prelude::*;

/// A whole HTML document around `body`.
pub fn document(title: &str, body: impl IntoView + 'static) -> String {
    document_refreshing(title, None, body)
}

/// The same, reloaded by the browser every `refresh` seconds when given (no JavaScript needed).
fn document_refreshing(title: &str, refresh: Option<u32>, body: impl IntoView + 'static) -> String {
    page::document(
        Head {
            title,
            site: "Tollgate",
            stylesheet: "/assets/console.css",
            script: None,
            refresh,
        },
        body,
    )
}

/// A logged-in page: the sidebar, then `content`.
pub fn page(title: &str, user: &str, content: impl IntoView + 'static) -> String {
    page_refreshing(title, user, None, content)
}

/// A logged-in page the browser reloads every `refresh` seconds when given.
pub fn page_refreshing(
    title: &str,
    user: &str,
    refresh: Option<u32>,
    content: impl IntoView + 'static,
) -> String {
    let user = user.to_string();
    let heading = title.to_string();
    document_refreshing(
        title,
        refresh,
        view! {
            <div class="shell">
                <nav class="sidebar" aria-label="Console">
                    <a class="brand" href="/">"Tollgate"</a>
                    <a href="/">"Dashboard"</a>
                    <a href="/services">"Services"</a>
                    <a href="/routes">"Routes"</a>
                    <a href="/upstreams">"Upstreams"</a>
                    <a href="/consumers">"Consumers"</a>
                    <a href="/plugins">"Plugins"</a>
                    <span class="nav-group">"Developer portal"</span>
                    <a href="/apis">"Published APIs"</a>
                    <a href="/plans">"Plans"</a>
                    <a href="/developers">"Developers"</a>
                    <form method="post" action="/logout" class="logout">
                        <span class="user">{user}</span>
                        <button type="submit">"Log out"</button>
                    </form>
                </nav>
                <main class="content">
                    <h1>{heading}</h1>
                    {content}
                </main>
            </div>
        },
    )
}

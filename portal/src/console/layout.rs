//! The console's page shell: the document, its stylesheet, and the sidebar.
use leptos::prelude::*;

/// A whole HTML document around `body`.
pub fn document(title: &str, body: impl IntoView + 'static) -> String {
    let title = format!("{title} · Tollgate");
    let html = view! {
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <title>{title}</title>
                <link rel="stylesheet" href="/assets/console.css"/>
            </head>
            <body>{body}</body>
        </html>
    }
    .to_html();
    format!("<!DOCTYPE html>{html}")
}

/// A logged-in page: the sidebar, then `content`.
pub fn page(title: &str, user: &str, content: impl IntoView + 'static) -> String {
    let user = user.to_string();
    let heading = title.to_string();
    document(
        title,
        view! {
            <div class="shell">
                <nav class="sidebar" aria-label="Console">
                    <a class="brand" href="/">"Tollgate"</a>
                    <a href="/">"Dashboard"</a>
                    <a href="/services">"Services"</a>
                    <a href="/routes">"Routes"</a>
                    <a href="/consumers">"Consumers"</a>
                    <a href="/plugins">"Plugins"</a>
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

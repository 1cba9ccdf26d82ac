//! The HTML document around every page of the console and the portal, the headers every
//! response of theirs carries, and the stylesheets and scripts those pages link to.
use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, MethodRouter};
use leptos::prelude::*;

pub const CSS: &str = "text/css; charset=utf-8";
pub const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// A route serving a stylesheet or script compiled into the binary.
pub fn asset<S: Clone + Send + Sync + 'static>(
    content_type: &'static str,
    body: &'static str,
) -> MethodRouter<S> {
    get(move || async move { ([(header::CONTENT_TYPE, content_type)], body) })
}

/// The text of a `<textarea>`, escaped. Leptos writes a textarea's children as they are
/// (`ESCAPE_CHILDREN` is false for it, as for `<script>`), so a value holding
/// `</textarea><script>` would end the element and run; every textarea's text goes through
/// here. (The browser decodes the entities back in the field, so what is posted is the value.)
pub fn textarea_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Headers on every console and portal response: scripts and styles only from the site's
/// own files (no inline script, so an injection that escaped the escaping still cannot run),
/// no framing (clickjacking), no MIME sniffing, and no full URLs in `Referer` to other sites.
const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("x-frame-options", "DENY"),
];

/// Middleware: adds `SECURITY_HEADERS` to every response.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        h.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    resp
}

/// What goes in a page's `<head>`.
pub struct Head<'a> {
    /// The page's own title; the site's name follows it.
    pub title: &'a str,
    pub site: &'static str,
    pub stylesheet: &'static str,
    /// A script that enhances the page; the page must work without it.
    pub script: Option<&'static str>,
    /// Reload every this many seconds (no JavaScript needed).
    pub refresh: Option<u32>,
}

pub fn document(head: Head, body: impl IntoView + 'static) -> String {
    let title = format!("{} · {}", head.title, head.site);
    let html = view! {
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                {head.refresh.map(|s| view! { <meta http-equiv="refresh" content=s.to_string()/> })}
                <title>{title}</title>
                <link rel="stylesheet" href=head.stylesheet/>
                {head.script.map(|src| view! { <script src=src defer></script> })}
            </head>
            <body>{body}</body>
        </html>
    }
    .to_html();
    format!("<!DOCTYPE html>{html}")
}

#[cfg(test)]
mod tests {
    /// Issue 22, item 2: a route path of `</textarea><script>` ran script on the edit page.
    #[test]
    fn textarea_text_cannot_close_its_element() {
        use leptos::prelude::*;
        let value = "</textarea><script>alert(1)</script> & more";
        let html = view! { <textarea>{super::textarea_text(value)}</textarea> }.to_html();
        assert_eq!(
            html,
            "<textarea>&lt;/textarea&gt;&lt;script&gt;alert(1)&lt;/script&gt; &amp; more</textarea>"
        );
    }
}

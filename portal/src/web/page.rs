//! The HTML document around every page of the console and the portal, and the stylesheets
//! and scripts those pages link to.
use axum::http::header;
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

//! The HTML document around every page of the console and the portal.
use leptos::prelude::*;

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

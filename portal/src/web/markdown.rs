//! Markdown from OpenAPI descriptions, rendered to HTML that is safe to put in a page: a
//! document is operator- or backend-supplied text, so its HTML goes through ammonia's
//! allow-list (no scripts, no event handlers, no `javascript:` links).
use pulldown_cmark::{html, Options, Parser};

pub fn to_safe_html(text: &str) -> String {
    let mut raw = String::new();
    html::push_html(&mut raw, Parser::new_ext(text, Options::ENABLE_TABLES));
    ammonia::Builder::default()
        .link_rel(Some("noopener noreferrer nofollow"))
        .clean(&raw)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::to_safe_html;

    #[test]
    fn markdown_is_rendered() {
        let h = to_safe_html("Some *pets* and [docs](https://example.com)");
        assert!(h.contains("<em>pets</em>"), "{h}");
        assert!(h.contains(r#"href="https://example.com""#), "{h}");
    }

    #[test]
    fn scripts_from_a_spec_do_not_survive() {
        let h = to_safe_html("<script>alert(1)</script> <img src=x onerror=alert(2)>");
        assert!(!h.contains("<script"), "{h}");
        assert!(!h.contains("onerror"), "{h}");
        let link = to_safe_html("[x](javascript:alert(3)) and [y](https://ok.example)");
        assert!(
            link.contains("<a") && !link.contains("javascript:"),
            "{link}"
        );
    }
}

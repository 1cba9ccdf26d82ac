//! A route's regex path as the router matches it. Most regex paths are literals in disguise:
//! the Kubernetes controller turns every Ingress `Exact` path and half of every `Prefix` path
//! into `~/a$`, as Kong's controller does. Those are matched by comparison (and found through
//! the router's index, not tried one by one), and only true patterns are compiled: compiling
//! thousands of literal regexes took most of a 5,000-path snapshot's build.
use regex::Regex;
use regex_syntax::hir::{HirKind, Look};

pub(super) enum RegexPath {
    /// `~/a$`: the whole path is the literal.
    Exact(String),
    /// `~/a`: the path starts with the literal.
    Prefix(String),
    Pattern(Regex),
}

impl RegexPath {
    /// The path `re` (the part after `~`), anchored at the start of the path as Kong does.
    pub(super) fn new(re: &str) -> Result<RegexPath, String> {
        let anchored = format!("^(?:{re})");
        if let Some(literal) = literal(&anchored) {
            return Ok(literal);
        }
        Regex::new(&anchored)
            .map(RegexPath::Pattern)
            .map_err(|e| e.to_string())
    }

    /// Where the match at the start of `path` ends, if it matches.
    pub(super) fn find(&self, path: &str) -> Option<usize> {
        match self {
            RegexPath::Exact(l) => (path == l).then_some(l.len()),
            RegexPath::Prefix(l) => path.starts_with(l.as_str()).then_some(l.len()),
            RegexPath::Pattern(re) => re.find(path).map(|m| m.end()),
        }
    }

    /// The capture `name` (a group's name, or its number) when the path matches; a literal
    /// has only group 0, the match itself.
    pub(super) fn capture(&self, path: &str, name: &str) -> Option<String> {
        match self {
            RegexPath::Pattern(re) => {
                let caps = re.captures(path)?;
                let group = match name.parse::<usize>() {
                    Ok(i) => caps.get(i),
                    Err(_) => caps.name(name),
                };
                group.map(|g| g.as_str().to_string())
            }
            literal => {
                let end = literal.find(path)?;
                (name == "0").then(|| path[..end].to_string())
            }
        }
    }
}

/// The literal an anchored regex is, when it is one: start, literal text, and an optional
/// end of text, nothing else.
fn literal(anchored: &str) -> Option<RegexPath> {
    let hir = regex_syntax::Parser::new().parse(anchored).ok()?;
    let HirKind::Concat(parts) = hir.kind() else {
        return None;
    };
    let text = |i: usize| match parts.get(i).map(|h| h.kind()) {
        Some(HirKind::Literal(l)) => String::from_utf8(l.0.to_vec()).ok(),
        _ => None,
    };
    let look = |i: usize, want: Look| matches!(parts.get(i).map(|h| h.kind()), Some(HirKind::Look(l)) if *l == want);
    if !look(0, Look::Start) {
        return None;
    }
    match parts.len() {
        2 => text(1).map(RegexPath::Prefix),
        3 if look(2, Look::End) => text(1).map(RegexPath::Exact),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(re: &str) -> &'static str {
        match RegexPath::new(re).unwrap() {
            RegexPath::Exact(_) => "exact",
            RegexPath::Prefix(_) => "prefix",
            RegexPath::Pattern(_) => "pattern",
        }
    }

    #[test]
    fn literals_are_recognised_and_patterns_compiled() {
        assert_eq!(kind("/svc0/p0$"), "exact");
        assert_eq!(kind("/svc0/p0"), "prefix");
        assert_eq!(kind(r"/v1\.0/x$"), "exact");
        assert_eq!(kind("/users/\\d+$"), "pattern");
        assert_eq!(kind("(?i)/a$"), "pattern");
        assert_eq!(kind("/a|/b"), "pattern");
        assert_eq!(kind("/a$|/b"), "pattern");
        // `(?m)$` also matches before a line break: not the end of the path.
        assert_eq!(kind("(?m)/a$"), "pattern");
    }

    #[test]
    fn literals_match_as_their_regexes_do() {
        let paths = ["/a", "/a/", "/ab", "/", "/A", "/a.0", "/x/a"];
        for re in ["/a$", "/a", r"/a\.0$", "/a/"] {
            let literal = RegexPath::new(re).unwrap();
            let regex = Regex::new(&format!("^(?:{re})")).unwrap();
            for p in paths {
                assert_eq!(
                    literal.find(p),
                    regex.find(p).map(|m| m.end()),
                    "{re} on {p}"
                );
            }
        }
        assert_eq!(
            RegexPath::new("/a").unwrap().capture("/ab", "0"),
            Some("/a".into())
        );
        assert_eq!(RegexPath::new("/a").unwrap().capture("/ab", "1"), None);
    }
}

//! request-transformer's value templates: `$(...)` in a configured value is replaced by a
//! value of the incoming request, as Kong renders its penlight templates. Kong evaluates any
//! Lua there; Tollgate takes the expressions its users write (README "Differences"):
//! `headers.x_name` / `headers["x-name"]`, `query_params.q` / `query_params["q"]`,
//! `uri_captures.name` / `uri_captures[1]` / `uri_captures["name"]`, quoted strings
//! (`$('$(kept)')` escapes a template) and `or` between them for a fallback. Anything else
//! is refused when the config is checked, not when a request renders it. A value that is
//! missing renders as nothing.
use http::HeaderMap;

/// A parsed value: text and expressions in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Piece>);

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    /// The first of these that has a value.
    Expr(Vec<Term>),
}

#[derive(Debug, Clone, PartialEq)]
enum Term {
    Literal(String),
    Lookup(Source, String),
    /// A header, by the names it may go by (`x_name` is also `x-name`), parsed once.
    Header(Vec<http::HeaderName>),
}

/// Where a lookup other than a header's reads from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    QueryParams,
    UriCaptures,
}

/// What templates read: the request as the client sent it, before any plugin changed it.
pub struct Env<'a> {
    pub headers: &'a HeaderMap,
    pub query: &'a [(String, String)],
    pub captures: &'a dyn Fn(&str) -> Option<String>,
}

impl Template {
    /// Parses `value`; the error says what Kong's schema would: the value and why.
    pub fn parse(value: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut rest = value;
        while let Some(start) = rest.find("$(") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_string()));
            }
            let body = &rest[start + 2..];
            let end = closing_paren(body).ok_or_else(|| {
                format!("value '{value}' is not in supported format, error: unclosed '$('")
            })?;
            let terms = expression(&body[..end])
                .map_err(|e| format!("value '{value}' is not in supported format, error: {e}"))?;
            pieces.push(Piece::Expr(terms));
            rest = &body[end + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Template(pieces))
    }

    /// The value when it holds no expression: it needs no request to render.
    pub fn plain(&self) -> Option<&str> {
        match self.0.as_slice() {
            [] => Some(""),
            [Piece::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// Whether an expression reads the query string.
    pub fn reads_query(&self) -> bool {
        self.0.iter().any(|p| match p {
            Piece::Expr(terms) => terms
                .iter()
                .any(|t| matches!(t, Term::Lookup(Source::QueryParams, _))),
            Piece::Text(_) => false,
        })
    }

    pub fn render(&self, env: &Env<'_>) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Expr(terms) => {
                    if let Some(v) = terms.iter().find_map(|t| t.value(env)) {
                        out.push_str(&v);
                    }
                }
            }
        }
        out
    }
}

impl Term {
    fn value(&self, env: &Env<'_>) -> Option<String> {
        match self {
            Term::Literal(s) => Some(s.clone()),
            Term::Header(names) => names
                .iter()
                .find_map(|n| env.headers.get(n))
                .and_then(|v| v.to_str().ok())
                .map(String::from),
            Term::Lookup(Source::QueryParams, name) => env
                .query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone()),
            Term::Lookup(Source::UriCaptures, name) => (env.captures)(name),
        }
    }
}

/// Where the `)` closing an expression is, outside quotes and brackets.
fn closing_paren(body: &str) -> Option<usize> {
    let (mut depth, mut quote) = (0usize, None);
    for (i, c) in body.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(' | '[') => depth += 1,
            (None, ']') => depth = depth.saturating_sub(1),
            (None, ')') if depth == 0 => return Some(i),
            (None, ')') => depth -= 1,
            _ => {}
        }
    }
    None
}

/// `term (or term)*`.
fn expression(text: &str) -> Result<Vec<Term>, String> {
    let mut tokens = Tokens(text.trim());
    let mut terms = vec![term(&mut tokens)?];
    while !tokens.0.is_empty() {
        if !tokens.keyword("or") {
            return Err(format!("unexpected '{}'", tokens.0));
        }
        terms.push(term(&mut tokens)?);
    }
    Ok(terms)
}

/// A quoted string, or a source and its key.
fn term(tokens: &mut Tokens<'_>) -> Result<Term, String> {
    if let Some(s) = tokens.string()? {
        return Ok(Term::Literal(s));
    }
    let name = tokens.identifier().ok_or("expected a name")?;
    let source = match name {
        "headers" => None,
        "query_params" => Some(Source::QueryParams),
        "uri_captures" => Some(Source::UriCaptures),
        other => return Err(format!("'{other}' is not available in templates")),
    };
    let key = if tokens.punct('.') {
        tokens
            .identifier()
            .ok_or("expected a name after '.'")?
            .to_string()
    } else if tokens.punct('[') {
        let key = match tokens.string()? {
            Some(s) => s,
            None => tokens
                .integer()
                .ok_or("expected a string or number in '[]'")?,
        };
        if !tokens.punct(']') {
            return Err("expected ']'".into());
        }
        key
    } else {
        return Err(format!("expected '.' or '[' after '{name}'"));
    };
    let Some(source) = source else {
        let lower = key.to_ascii_lowercase();
        let dashed = lower.replace('_', "-");
        let names = [lower, dashed]
            .iter()
            .filter_map(|n| http::HeaderName::try_from(n.as_str()).ok())
            .collect();
        return Ok(Term::Header(names));
    };
    Ok(Term::Lookup(source, key))
}

/// The rest of an expression, read token by token.
struct Tokens<'a>(&'a str);

impl<'a> Tokens<'a> {
    fn skip_space(&mut self) {
        self.0 = self.0.trim_start();
    }

    fn punct(&mut self, c: char) -> bool {
        self.skip_space();
        match self.0.strip_prefix(c) {
            Some(rest) => {
                self.0 = rest;
                true
            }
            None => false,
        }
    }

    fn take_while(&mut self, ok: impl Fn(char) -> bool) -> Option<&'a str> {
        self.skip_space();
        let end = self.0.find(|c: char| !ok(c)).unwrap_or(self.0.len());
        let (taken, rest) = self.0.split_at(end);
        self.0 = rest;
        (!taken.is_empty()).then_some(taken)
    }

    fn identifier(&mut self) -> Option<&'a str> {
        self.skip_space();
        if self.0.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        self.take_while(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    fn integer(&mut self) -> Option<String> {
        self.take_while(|c| c.is_ascii_digit()).map(String::from)
    }

    fn keyword(&mut self, word: &str) -> bool {
        let before = self.0;
        match self.identifier() {
            Some(w) if w == word => true,
            _ => {
                self.0 = before;
                false
            }
        }
    }

    /// A `'...'` or `"..."` string, if one comes next.
    fn string(&mut self) -> Result<Option<String>, String> {
        self.skip_space();
        let Some(quote) = self.0.chars().next().filter(|c| *c == '\'' || *c == '"') else {
            return Ok(None);
        };
        let body = &self.0[1..];
        let end = body.find(quote).ok_or("unfinished string")?;
        self.0 = &body[end + 1..];
        Ok(Some(body[..end].to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, headers: &[(&str, &str)], query: &[(&str, &str)]) -> String {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let captures = |name: &str| match name {
            "0" => Some("/user1/foo/user2/bar".to_string()),
            "1" | "user1" => Some("foo".to_string()),
            "user2" => Some("bar".to_string()),
            _ => None,
        };
        let env = Env {
            headers: &h,
            query: &query,
            captures: &captures,
        };
        Template::parse(template).unwrap().render(&env)
    }

    // spec/03-plugins/36-request-transformer/02-access_spec.lua:2064, :2086, :2127
    #[test]
    fn captures_headers_and_query_params_render() {
        let uri = "/requests/user2/$(uri_captures.user2)/user1/$(uri_captures.user1)";
        assert_eq!(render(uri, &[], &[]), "/requests/user2/bar/user1/foo");
        assert_eq!(
            render("/requests$(uri_captures[0])", &[], &[]),
            "/requests/user1/foo/user2/bar"
        );
        assert_eq!(render(r#"$(uri_captures["user1"])"#, &[], &[]), "foo");
        assert_eq!(
            render(
                "$(headers.x_test)-$(headers['X-Test'])",
                &[("x-test", "1")],
                &[]
            ),
            "1-1"
        );
        assert_eq!(render("$(query_params.q1)", &[], &[("q1", "20")]), "20");
    }

    // 02-access_spec.lua:2099 (a fallback), :2208 (an escaped template)
    #[test]
    fn fallbacks_and_escapes() {
        let t = "$(uri_captures.missing or 'default1')";
        assert_eq!(render(t, &[], &[]), "default1");
        assert_eq!(
            render("$('$(uri_captures.user1)')", &[], &[]),
            "$(uri_captures.user1)"
        );
        assert_eq!(render("a$(headers.none)b", &[], &[]), "ab");
        assert_eq!(Template::parse("plain").unwrap().plain(), Some("plain"));
    }

    // 01-schema_spec.lua:47 (a malformed expression), 02-access_spec.lua:2117 and :2287
    // (expressions Kong fails on at request time are refused up front here)
    #[test]
    fn malformed_and_unsupported_expressions_are_refused() {
        for bad in [
            "$(uri_captures user2)",
            "$(10 * uri_captures.user1)",
            "$(shared.written = true)",
            "$(foo())",
            "$(headers.x",
            "$('open)",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}

//! Where the proxy serves an operation of the operator's document. The document describes the
//! backend: its paths hang off the service's URL. A route with prefix `/pets` and
//! `strip_path` serves upstream `/pet/{id}` at `/pets/pet/{id}`; without `strip_path` the
//! request path goes upstream unchanged, so the operation is served at its own path when the
//! route's prefix matches it.
use tollgate_gateway::model::Route;

/// The methods a route with no `methods` is documented with.
pub const ANY_METHOD: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

/// A public path and the route that serves it.
#[derive(Debug, Clone)]
pub struct Served<'a> {
    pub path: String,
    pub route: &'a Route,
}

/// The route's plain prefixes (regex paths, `~...`, cannot be turned into documentation).
pub fn prefixes(route: &Route) -> impl Iterator<Item = &str> {
    route
        .paths
        .iter()
        .flatten()
        .map(String::as_str)
        .filter(|p| !p.starts_with('~'))
}

pub fn serves_method(route: &Route, method: &str) -> bool {
    match &route.methods {
        Some(m) if !m.is_empty() => m.iter().any(|x| x.eq_ignore_ascii_case(method)),
        _ => true,
    }
}

/// `/pets/` + `/pet` → `/pets/pet`; `/pets` + `/pet` → `/pets/pet`.
pub fn join(prefix: &str, path: &str) -> String {
    match (prefix.ends_with('/'), path.starts_with('/')) {
        (true, true) => format!("{prefix}{}", &path[1..]),
        (false, false) if !path.is_empty() => format!("{prefix}/{path}"),
        _ => format!("{prefix}{path}"),
    }
}

/// Every public path at which `routes` serve `method upstream`, one per serving prefix.
pub fn served<'a>(routes: &'a [Route], method: &str, upstream: &str) -> Vec<Served<'a>> {
    let mut out: Vec<Served<'a>> = Vec::new();
    for route in routes.iter().filter(|r| serves_method(r, method)) {
        for prefix in prefixes(route) {
            let path = if route.strip_path {
                join(prefix, upstream)
            } else if upstream.starts_with(prefix) {
                upstream.to_string()
            } else {
                continue;
            };
            if !out.iter().any(|s| s.path == path) {
                out.push(Served { path, route });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(paths: &[&str], strip: bool, methods: Option<&[&str]>) -> Route {
        crate::apis::test_route(None, paths, strip, methods)
    }

    #[test]
    fn strip_path_routes_put_their_prefix_in_front() {
        let routes = [route(&["/pets/", "/v2"], true, None)];
        let s = served(&routes, "get", "/pet/{petId}");
        let paths: Vec<&str> = s.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(paths, ["/pets/pet/{petId}", "/v2/pet/{petId}"]);
    }

    #[test]
    fn other_routes_serve_only_paths_under_their_prefix() {
        let routes = [route(&["/store"], false, None)];
        assert_eq!(
            served(&routes, "GET", "/store/order")[0].path,
            "/store/order"
        );
        assert!(served(&routes, "GET", "/user").is_empty());
    }

    #[test]
    fn methods_and_regex_paths_are_respected() {
        let routes = [
            route(&["/ro"], true, Some(&["GET"])),
            route(&["~/x/\\d+"], true, None),
        ];
        assert_eq!(served(&routes, "get", "/a").len(), 1);
        assert!(served(&routes, "post", "/a").is_empty());
    }
}

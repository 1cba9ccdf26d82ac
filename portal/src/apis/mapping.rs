//! Where the proxy serves an operation of the operator's document. The document describes the
//! backend: an operation's path hangs off its `servers` URL's path (`/api` in
//! `http://backend:5000/api`), and the backend receives that whole path. A public path serves
//! it when the gateway's own upstream path joining (service path, route prefix, `strip_path`,
//! `path_handling`: `tollgate_gateway::router::path::upstream_path`) sends it there: with
//! `strip_path`, prefix `/pets` serves upstream `/pet/{id}` at `/pets/pet/{id}`; without it,
//! the request path goes upstream after the service path. An operation no route reaches is
//! served nowhere.
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

/// The path part of an OpenAPI `servers` URL (`http://h:5000/api/` → `/api`, `/v1` → `/v1`),
/// without its trailing slash; empty when it has none.
pub fn base_path(server_url: &str) -> &str {
    let path = match server_url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None if server_url.starts_with('/') => server_url,
        None => "",
    };
    path.trim_end_matches('/')
}

/// Every public path at which `routes` of a service with path `service_path` serve `method`
/// on the backend path `upstream` (the operation's path after its server's base path), one
/// per serving prefix.
pub fn served<'a>(
    routes: &'a [Route],
    service_path: Option<&str>,
    method: &str,
    upstream: &str,
) -> Vec<Served<'a>> {
    let service = service_path.unwrap_or("/");
    let mut out: Vec<Served<'a>> = Vec::new();
    for route in routes.iter().filter(|r| serves_method(r, method)) {
        for prefix in prefixes(route) {
            let found = candidates(service, prefix, upstream)
                .into_iter()
                .find(|x| sends(route, service, prefix, x, upstream));
            let Some(path) = found else { continue };
            if !out.iter().any(|s| s.path == path) {
                out.push(Served { path, route });
            }
        }
    }
    out
}

/// Whether the request path `x`, matched by `prefix` of `route`, goes upstream as `upstream`.
fn sends(route: &Route, service: &str, prefix: &str, x: &str, upstream: &str) -> bool {
    use tollgate_gateway::router::path::upstream_path;
    let v1 = route.path_handling == "v1";
    x.starts_with(prefix)
        && upstream_path(service, x, prefix.len(), route.strip_path, v1).concat() == upstream
}

/// Request paths that could go upstream as `upstream`: what is left of it after the service's
/// path, put after the route's prefix (with `strip_path`) or as the whole path, with and
/// without a joining slash. `sends` keeps the one the gateway really maps.
fn candidates(service: &str, prefix: &str, upstream: &str) -> Vec<String> {
    let trimmed = service.trim_end_matches('/');
    let mut rests: Vec<&str> = vec![upstream];
    rests.extend(upstream.strip_prefix(service));
    rests.extend(upstream.strip_prefix(trimmed));
    let mut out = Vec::new();
    for rest in rests {
        let bare = rest.trim_start_matches('/');
        for x in [
            format!("/{bare}"),
            rest.to_string(),
            join(prefix, rest),
            format!("{prefix}{bare}"),
            format!("{}/{bare}", prefix.trim_end_matches('/')),
            prefix.to_string(),
        ] {
            if x.starts_with('/') && !out.contains(&x) {
                out.push(x);
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
        let s = served(&routes, None, "get", "/pet/{petId}");
        let paths: Vec<&str> = s.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(paths, ["/pets/pet/{petId}", "/v2/pet/{petId}"]);
    }

    #[test]
    fn other_routes_serve_only_paths_under_their_prefix() {
        let routes = [route(&["/store"], false, None)];
        assert_eq!(
            served(&routes, None, "GET", "/store/order")[0].path,
            "/store/order"
        );
        assert!(served(&routes, None, "GET", "/user").is_empty());
    }

    #[test]
    fn methods_and_regex_paths_are_respected() {
        let routes = [
            route(&["/ro"], true, Some(&["GET"])),
            route(&["~/x/\\d+"], true, None),
        ];
        assert_eq!(served(&routes, None, "get", "/a").len(), 1);
        assert!(served(&routes, None, "post", "/a").is_empty());
    }

    /// Issue 23, item 8: the seed's backend serves `/api/get/context`; its document says
    /// `servers: [{url: http://pytbak:5000/api}]` and `/get/context`. A route `/api/` without
    /// strip_path serves it at `/api/get/context`; with strip_path at `/api/api/get/context`;
    /// a service path `/api` with a stripping route `/ctx` at `/ctx/get/context`.
    #[test]
    fn servers_base_path_and_service_path_are_mapped() {
        assert_eq!(base_path("http://pytbak:5000/api/"), "/api");
        assert_eq!(base_path("/v1"), "/v1");
        assert_eq!(base_path("https://h"), "");
        let upstream = join(base_path("http://pytbak:5000/api"), "/get/context");
        let keep = [route(&["/api/"], false, None)];
        assert_eq!(
            served(&keep, None, "GET", &upstream)[0].path,
            "/api/get/context"
        );
        let strip = [route(&["/api/"], true, None)];
        assert_eq!(
            served(&strip, None, "GET", &upstream)[0].path,
            "/api/api/get/context"
        );
        let under = [route(&["/ctx"], true, None)];
        let s = served(&under, Some("/api"), "GET", &upstream);
        assert_eq!(s[0].path, "/ctx/get/context");
        // Not reachable: a non-stripping route whose prefix the backend path lacks.
        let other = [route(&["/other"], false, None)];
        assert!(served(&other, None, "GET", &upstream).is_empty());
    }
}

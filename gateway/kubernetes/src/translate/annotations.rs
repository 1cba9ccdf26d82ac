//! Kong's annotations (`konghq.com/...`), read as KIC's `internal/annotations` reads them: a
//! value that does not parse is ignored (KIC logs it) rather than failing the object.
use std::collections::BTreeMap;

pub const PREFIX: &str = "konghq.com/";
pub const INGRESS_CLASS: &str = "kubernetes.io/ingress.class";
pub const DEFAULT_CLASS: &str = "ingressclass.kubernetes.io/is-default-class";

pub type Annotations = BTreeMap<String, String>;

/// The protocols Kong's routes and services take (KIC's `util.ValidateProtocol`).
pub const PROTOCOLS: &[&str] = &[
    "http",
    "https",
    "grpc",
    "grpcs",
    "tcp",
    "tls",
    "udp",
    "tls_passthrough",
    "ws",
    "wss",
];

/// `konghq.com/<key>`'s value.
pub fn get<'a>(a: &'a Annotations, key: &str) -> Option<&'a str> {
    a.get(&format!("{PREFIX}{key}")).map(String::as_str)
}

/// A comma-separated list, items trimmed, empty items dropped.
pub fn list(a: &Annotations, key: &str) -> Vec<String> {
    get(a, key).map(split).unwrap_or_default()
}

pub fn split(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `true` / `false` in any case; anything else is no value.
pub fn boolean(a: &Annotations, key: &str) -> Option<bool> {
    match get(a, key)?.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

pub fn integer(a: &Annotations, key: &str) -> Option<i64> {
    get(a, key)?.trim().parse().ok()
}

/// `konghq.com/headers.<name>: v1,v2` → `{name: [v1, v2]}` (`konghq.com/headers-separator`
/// changes the separator).
pub fn headers(a: &Annotations) -> BTreeMap<String, Vec<String>> {
    let sep = get(a, "headers-separator").unwrap_or(",");
    let prefix = format!("{PREFIX}headers.");
    a.iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix(&prefix)?;
            (!name.is_empty() && !v.is_empty()).then(|| {
                (
                    name.to_string(),
                    v.split(sep).map(|s| s.trim().to_string()).collect(),
                )
            })
        })
        .collect()
}

/// The plugins an object names (`konghq.com/plugins: a, b`), each as (namespace, name): a
/// plain name is in the object's own namespace, `ns:name` another's.
pub fn plugins(a: &Annotations, own_namespace: &str) -> Vec<(String, String)> {
    list(a, "plugins")
        .into_iter()
        .map(|p| match p.split_once(':') {
            Some((ns, name)) => (ns.to_string(), name.to_string()),
            None => (own_namespace.to_string(), p),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anns(pairs: &[(&str, &str)]) -> Annotations {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn lists_booleans_and_headers() {
        let a = anns(&[
            ("konghq.com/methods", " GET, post ,,"),
            ("konghq.com/strip-path", "TRUE"),
            ("konghq.com/preserve-host", "yes"),
            ("konghq.com/headers.x-env", "a, b"),
            ("konghq.com/headers.", "ignored"),
            ("konghq.com/plugins", "one, other:two"),
        ]);
        assert_eq!(list(&a, "methods"), ["GET", "post"]);
        assert_eq!(boolean(&a, "strip-path"), Some(true));
        assert_eq!(boolean(&a, "preserve-host"), None);
        assert_eq!(
            headers(&a),
            BTreeMap::from([("x-env".to_string(), vec!["a".to_string(), "b".to_string()])])
        );
        assert_eq!(
            plugins(&a, "ns"),
            [
                ("ns".to_string(), "one".to_string()),
                ("other".to_string(), "two".to_string())
            ]
        );
    }
}

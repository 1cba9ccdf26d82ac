//! The cache key of a request, as Kong's proxy-cache makes it
//! (kong/plugins/proxy-cache/cache_key.lua): the SHA-256, in hex, of
//! `prefix|method|path|params|headers`, where the prefix is `consumer:route` (or the route,
//! or `default`), params the query's parameters (those in `vary_query_params`, else all,
//! sorted by name) and headers those in `vary_headers`, each as `name=value` (several values
//! sorted and joined by commas, a parameter without a value as its bare name), joined by
//! colons. Kong hashes the request line (method, target and protocol when there is no query);
//! Tollgate hashes the method and path, so keys differ from Kong's but not in what they tell
//! apart.
use sha2::{Digest, Sha256};

/// A cache key: the digest, which the stores index by, and its hex form, which the
/// `X-Cache-Key` header and the admin API show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub [u8; 32]);

impl Key {
    pub fn hex(&self) -> String {
        crate::hex::encode(&self.0)
    }

    /// The key a hex text names, if it is one.
    pub fn from_hex(text: &str) -> Option<Key> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        let mut digest = [0u8; 32];
        for (i, pair) in bytes.chunks(2).enumerate() {
            digest[i] = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Some(Key(digest))
    }
}

/// What a request's key is made of.
pub struct Parts<'a> {
    pub consumer: Option<&'a str>,
    pub route: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    /// The query's parameters, decoded; `None` as value for a bare name (`?a&b`).
    pub params: Vec<(String, Option<String>)>,
    /// The request's headers, lowercase names (the ones `vary_headers` names are read).
    pub headers: &'a http::HeaderMap,
}

pub fn build(p: &Parts<'_>, vary_query_params: &[String], vary_headers: &[String]) -> Key {
    let prefix = match (p.consumer, p.route) {
        (Some(consumer), Some(route)) => format!("{consumer}:{route}"),
        (None, Some(route)) => route.to_string(),
        _ => "default".to_string(),
    };
    let params = params_key(&p.params, vary_query_params);
    let headers = headers_key(p.headers, vary_headers);
    let text = format!("{prefix}|{}|{}|{params}|{headers}", p.method, p.path);
    Key(Sha256::digest(text.as_bytes()).into())
}

/// The query's part of the key: the parameters `vary` names, in its order, or all of them
/// sorted by name when it names none.
pub fn params_key(params: &[(String, Option<String>)], vary: &[String]) -> String {
    let mut names: Vec<&str> = if vary.is_empty() {
        params.iter().map(|(n, _)| n.as_str()).collect()
    } else {
        vary.iter().map(String::as_str).collect()
    };
    if vary.is_empty() {
        names.sort_unstable();
        names.dedup();
    }
    let fields = names.into_iter().filter_map(|name| {
        let values: Vec<Option<&str>> = params
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
            .collect();
        field(name, values)
    });
    fields.collect::<Vec<_>>().join(":")
}

/// The headers' part of the key: those `vary` names, in its order; none when it names none.
pub fn headers_key(headers: &http::HeaderMap, vary: &[String]) -> String {
    let fields = vary.iter().filter_map(|name| {
        let values = headers
            .get_all(name.to_ascii_lowercase().as_str())
            .iter()
            .map(|v| Some(std::str::from_utf8(v.as_bytes()).unwrap_or("")))
            .collect();
        field(name, values)
    });
    fields.collect::<Vec<_>>().join(":")
}

/// `name=value`, `name=a,b` for several values (sorted), `name` for one without a value;
/// `None` when the request has none.
fn field(name: &str, values: Vec<Option<&str>>) -> Option<String> {
    match values.as_slice() {
        [] => None,
        [None] => Some(name.to_string()),
        [Some(one)] => Some(format!("{name}={one}")),
        several => {
            let mut texts: Vec<&str> = several.iter().map(|v| v.unwrap_or("")).collect();
            texts.sort_unstable();
            Some(format!("{name}={}", texts.join(",")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), Some(v.to_string())))
            .collect()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    // spec/03-plugins/31-proxy-cache/05-cache_key_spec.lua:63-110 (params_key).
    #[test]
    fn params_key_follows_kong() {
        let ab = params(&[("b", "2"), ("a", "1")]);
        assert_eq!(params_key(&ab, &[]), "a=1:b=2"); // :64 defaults to all, :75 sorts
        assert_eq!(params_key(&[], &[]), ""); // :67
        assert_eq!(params_key(&[], &names(&["a"])), ""); // :71
        assert_eq!(params_key(&ab, &names(&["a"])), "a=1"); // :83
        let repeated = params(&[("a", "2"), ("a", "1"), ("b", "2")]);
        assert_eq!(params_key(&repeated, &names(&["a"])), "a=1,2"); // :88, :93
        assert_eq!(params_key(&repeated, &names(&["a", "b", "c"])), "a=1,2:b=2"); // :98
        let bare = vec![("a".to_string(), None), ("b".to_string(), None)];
        assert_eq!(params_key(&bare, &[]), "a:b");
    }

    // spec/03-plugins/31-proxy-cache/05-cache_key_spec.lua:112-150 (headers_key).
    #[test]
    fn headers_key_follows_kong() {
        let mut h = http::HeaderMap::new();
        h.append("a", "2".parse().unwrap());
        h.append("a", "1".parse().unwrap());
        h.append("b", "2".parse().unwrap());
        assert_eq!(headers_key(&h, &[]), ""); // :113 defaults to none
        assert_eq!(headers_key(&h, &names(&["b"])), "b=2"); // :126
        assert_eq!(headers_key(&h, &names(&["A"])), "A=1,2"); // :131, :136
        assert_eq!(headers_key(&h, &names(&["a", "b", "c"])), "a=1,2:b=2"); // :141
    }

    // spec/03-plugins/31-proxy-cache/05-cache_key_spec.lua:8-61 (prefix_uuid): consumers
    // and routes tell keys apart.
    #[test]
    fn keys_differ_by_consumer_and_route_and_are_64_hex_digits() {
        let h = http::HeaderMap::new();
        let key = |consumer, route| {
            build(
                &Parts {
                    consumer,
                    route,
                    method: "GET",
                    path: "/get",
                    params: Vec::new(),
                    headers: &h,
                },
                &[],
                &[],
            )
        };
        let plain = key(None, Some("r1"));
        assert_eq!(plain, key(None, Some("r1")));
        assert_ne!(plain, key(None, Some("r2")));
        assert_ne!(plain, key(Some("c1"), Some("r1")));
        assert_ne!(key(Some("c1"), Some("r1")), key(Some("c2"), Some("r1")));
        assert_eq!(key(Some("c1"), None), key(None, None)); // "default"
        let hex = plain.hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(Key::from_hex(&hex), Some(plain));
        assert_eq!(Key::from_hex("123"), None);
    }
}

//! Entities another source owns: the Kubernetes controller tags each entity it makes with the
//! object it came from (`k8s-kind:Ingress`, `k8s-namespace:default`, `k8s-name:api`). Such an
//! entity changes with its object, so the admin API refuses to change it and the console shows
//! it read-only, both naming the object from here.
use serde_json::Value;
use std::fmt;

/// The tag prefix every entity the Kubernetes controller makes carries.
pub const CLUSTER_TAG: &str = "k8s-kind:";

/// The Kubernetes object an entity belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterObject {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ClusterObject {
    /// The object `body`'s tags name, if the controller made it.
    pub fn of(body: &Value) -> Option<ClusterObject> {
        let tags = body["tags"].as_array()?;
        let tag = |prefix| tag(tags, prefix).map(str::to_string);
        Some(ClusterObject {
            kind: tag(CLUSTER_TAG)?,
            namespace: tag("k8s-namespace:"),
            name: tag("k8s-name:").unwrap_or_default(),
        })
    }
}

/// The value of the first of `tags` that starts with `prefix` (`k8s-name:api` → `api`).
pub fn tag<'a>(tags: &'a [Value], prefix: &str) -> Option<&'a str> {
    tags.iter()
        .filter_map(Value::as_str)
        .find_map(|t| t.strip_prefix(prefix))
}

/// `Ingress default/api` (a cluster-wide object has no namespace).
impl fmt::Display for ClusterObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_owner_is_read_from_the_tags() {
        let route =
            json!({"tags": ["k8s-name:api", "k8s-namespace:shop", "k8s-kind:Ingress", "team-a"]});
        assert_eq!(
            ClusterObject::of(&route).unwrap().to_string(),
            "Ingress shop/api"
        );
        let global = json!({"tags": ["k8s-name:auth", "k8s-kind:KongClusterPlugin"]});
        assert_eq!(
            ClusterObject::of(&global).unwrap().to_string(),
            "KongClusterPlugin auth"
        );
        assert_eq!(ClusterObject::of(&json!({"tags": ["k8s-name:x"]})), None);
        assert_eq!(ClusterObject::of(&json!({"tags": null})), None);
    }
}

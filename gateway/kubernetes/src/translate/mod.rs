//! The cluster's objects into a decK document, as Kong's ingress controller (KIC 3.x,
//! `internal/dataplane/translator/`) translates them: its entity names, its defaults, its
//! annotations. No I/O: the running controller and `tollgate kubernetes translate` call it
//! on the objects they hold.
//!
//! What fails to translate is a `Failure` on the object at fault (the controller makes it an
//! Event and a `/status` line), and only that part is left out: the document is validated the
//! way a DB-less file is, and an entity the validation refuses is dropped, named by the
//! `k8s-*` tags it carries, until the rest loads.
mod annotations;
mod backends;
mod certificates;
mod consumers;
mod ingress;
pub mod objects;
mod plugins;

use annotations::{Annotations, DEFAULT_CLASS, INGRESS_CLASS};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
pub use objects::{Cluster, ObjectRef};
use objects::{KongConsumer, KongIngress, KongPlugin};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use tollgate_gateway::declarative::{self, Config};

/// The ingress classes Tollgate serves unless told otherwise.
pub const DEFAULT_CLASSES: [&str; 2] = ["tollgate", "kong"];
/// How many rounds of dropping refused entities a translation makes before giving up.
const MAX_VALIDATION_ROUNDS: usize = 32;

/// What a translation takes besides the objects.
#[derive(Clone, Debug)]
pub struct Options {
    /// The ingress classes served (`spec.ingressClassName` or the legacy annotation).
    pub classes: Vec<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            classes: DEFAULT_CLASSES.iter().map(|c| c.to_string()).collect(),
        }
    }
}

/// Something that kept part of an object from translating, and that object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub object: ObjectRef,
    pub message: String,
}

/// The failures of one translation, each (object, message) once.
#[derive(Default, Debug)]
pub struct Failures(Vec<Failure>);

impl Failures {
    pub fn push(&mut self, object: &ObjectRef, message: impl Into<String>) {
        let f = Failure {
            object: object.clone(),
            message: message.into(),
        };
        if !self.0.contains(&f) {
            self.0.push(f);
        }
    }

    pub fn push_all(&mut self, objects: &[&ObjectRef], message: impl Into<String>) {
        let message = message.into();
        for o in objects {
            self.push(o, message.clone());
        }
    }
}

/// A translation: the decK document, the validated configuration it loads as, and what failed.
pub struct Translation {
    pub document: Value,
    pub config: Config,
    pub failures: Vec<Failure>,
}

/// The objects a translation looks up, by namespace and name.
pub struct Index<'a> {
    services: HashMap<(&'a str, &'a str), &'a Service>,
    secrets: HashMap<(&'a str, &'a str), &'a Secret>,
    /// EndpointSlices by the Service they belong to (`kubernetes.io/service-name`).
    slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
    plugins: HashMap<(&'a str, &'a str), &'a KongPlugin>,
    cluster_plugins: HashMap<&'a str, &'a KongPlugin>,
    global_plugins: Vec<&'a KongPlugin>,
    consumers: HashMap<(&'a str, &'a str), &'a KongConsumer>,
    kong_ingresses: HashMap<(&'a str, &'a str), &'a KongIngress>,
}

fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (&str, &str) {
    (
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

impl<'a> Index<'a> {
    fn new(c: &'a Cluster, classes: &Classes) -> Index<'a> {
        let mut slices: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for s in &c.endpoint_slices {
            let owner = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"));
            if let Some(owner) = owner {
                let ns = s.metadata.namespace.as_deref().unwrap_or_default();
                slices.entry((ns, owner.as_str())).or_default().push(s);
            }
        }
        let cluster_plugins: Vec<&KongPlugin> = c
            .kong_cluster_plugins
            .iter()
            .filter(|p| classes.claims(p.metadata.annotations.as_ref()))
            .collect();
        Index {
            services: c.services.iter().map(|s| (key(&s.metadata), s)).collect(),
            secrets: c.secrets.iter().map(|s| (key(&s.metadata), s)).collect(),
            slices,
            plugins: c
                .kong_plugins
                .iter()
                .map(|p| (key(&p.metadata), p))
                .collect(),
            global_plugins: cluster_plugins
                .iter()
                .filter(|p| {
                    p.metadata.labels.as_ref().and_then(|l| l.get("global"))
                        == Some(&"true".to_string())
                })
                .copied()
                .collect(),
            cluster_plugins: cluster_plugins
                .iter()
                .map(|p| (key(&p.metadata).1, *p))
                .collect(),
            consumers: c
                .kong_consumers
                .iter()
                .map(|k| (key(&k.metadata), k))
                .collect(),
            kong_ingresses: c
                .kong_ingresses
                .iter()
                .map(|k| (key(&k.metadata), k))
                .collect(),
        }
    }
}

/// Which objects are this controller's: those of its ingress classes, and those with no class
/// when one of its IngressClasses is the cluster's default.
struct Classes<'a> {
    names: &'a [String],
    default: bool,
}

impl Classes<'_> {
    fn new<'a>(opts: &'a Options, c: &Cluster) -> Classes<'a> {
        let default = c.ingress_classes.iter().any(|ic| {
            opts.classes
                .iter()
                .any(|n| Some(n) == ic.metadata.name.as_ref())
                && ic
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DEFAULT_CLASS))
                    .is_some_and(|v| v == "true")
        });
        Classes {
            names: &opts.classes,
            default,
        }
    }

    fn matches(&self, class: Option<&str>) -> bool {
        match class {
            Some(c) => self.names.iter().any(|n| n == c),
            None => self.default,
        }
    }

    /// For objects classed by the annotation only (KongConsumer, KongClusterPlugin).
    fn claims(&self, anns: Option<&Annotations>) -> bool {
        self.matches(anns.and_then(|a| a.get(INGRESS_CLASS)).map(String::as_str))
    }

    fn claims_ingress(&self, ing: &Ingress) -> bool {
        let spec_class = ing
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref());
        let annotation = ing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(INGRESS_CLASS))
            .map(String::as_str);
        self.matches(annotation.or(spec_class))
    }
}

/// The Ingresses of the classes served.
pub fn served_ingresses<'a>(cluster: &'a Cluster, opts: &Options) -> Vec<&'a Ingress> {
    let classes = Classes::new(opts, cluster);
    cluster
        .ingresses
        .iter()
        .filter(|i| classes.claims_ingress(i))
        .collect()
}

/// Translates the cluster's objects into the configuration the gateway serves. `now` stamps
/// the entities' times.
pub fn translate(cluster: &Cluster, opts: &Options, now: i64) -> Translation {
    let classes = Classes::new(opts, cluster);
    let index = Index::new(cluster, &classes);
    let mut failures = Failures::default();
    let ingresses = served_ingresses(cluster, opts);
    let mut services = ingress::services(&ingresses, &mut failures);
    let upstreams = backends::complete(&mut services, &index, &mut failures);
    let mut kong_consumers: Vec<&KongConsumer> = cluster
        .kong_consumers
        .iter()
        .filter(|c| classes.claims(c.metadata.annotations.as_ref()))
        .collect();
    kong_consumers.sort_by_key(|c| key(&c.metadata));
    let mut consumers = consumers::consumers(&kong_consumers, &index, &mut failures);
    let plugins = plugins::plugins(&services, &mut consumers, &index, &mut failures);
    let certificates = certificates::certificates(&ingresses, &index, &mut failures);
    let document = json!({
        "_format_version": "3.0",
        "services": services.into_values().map(|s| {
            let mut f = s.fields;
            f.insert("routes".into(), s.routes.into_iter().map(|r| Value::Object(r.fields)).collect());
            Value::Object(f)
        }).collect::<Vec<_>>(),
        "upstreams": upstreams,
        "consumers": consumers.into_iter().map(|c| Value::Object(c.fields)).collect::<Vec<_>>(),
        "plugins": plugins,
        "certificates": certificates,
    });
    validate(document, now, failures)
}

/// Loads the document as a DB-less file would be; entities it refuses are dropped, each a
/// failure on the object its tags name, until the rest loads.
fn validate(mut document: Value, now: i64, mut failures: Failures) -> Translation {
    for _ in 0..MAX_VALIDATION_ROUNDS {
        let diagnostics = match declarative::load_value(document.clone(), now) {
            Ok(config) => {
                return Translation {
                    document,
                    config,
                    failures: failures.0,
                }
            }
            Err(d) => d,
        };
        let mut dropped = false;
        for d in &diagnostics {
            let Some(path) = entity_path(&d.path) else {
                continue;
            };
            let Some(entity) = pointer(&mut document, &path) else {
                continue;
            };
            let origin = entity["tags"]
                .as_array()
                .and_then(|t| ObjectRef::from_tags(t));
            let message = format!("{} refused: {}", describe(entity), d.message);
            if let Some(o) = origin {
                failures.push(&o, message);
            }
            *entity = Value::Null;
            dropped = true;
        }
        if !dropped {
            break;
        }
        drop_nulls(&mut document);
    }
    tracing::error!("the translated configuration does not validate; nothing of it applied");
    Translation {
        document: json!({"_format_version": "3.0"}),
        config: Config {
            records: Vec::new(),
            plans: Vec::new(),
        },
        failures: failures.0,
    }
}

/// The entity a diagnostic's path is about: `services[1].routes[0].paths` → `services[1].routes[0]`.
fn entity_path(path: &str) -> Option<String> {
    let end = path.rfind(']')?;
    Some(path[..=end].to_string())
}

/// The value at `a[1].b[2]`.
fn pointer<'a>(doc: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    let pointer: String = path
        .split('.')
        .flat_map(|seg| seg.split('['))
        .filter(|s| !s.is_empty())
        .map(|s| format!("/{}", s.trim_end_matches(']')))
        .collect();
    doc.pointer_mut(&pointer).filter(|v| !v.is_null())
}

/// `route pytbak.api.pytbak-svc.host.5000`
fn describe(entity: &Value) -> String {
    let name = ["name", "username", "custom_id"]
        .iter()
        .find_map(|f| entity.get(*f).and_then(Value::as_str));
    match name {
        Some(n) => format!("entity {n:?}"),
        None => "an entity".to_string(),
    }
}

fn drop_nulls(v: &mut Value) {
    match v {
        Value::Array(items) => {
            items.retain(|i| !i.is_null());
            items.iter_mut().for_each(drop_nulls);
        }
        Value::Object(m) => m.values_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Reads manifest files' text into the objects they hold.
pub fn read_manifests(texts: &[(String, String)]) -> Result<Cluster, Vec<String>> {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for (name, text) in texts {
        match declarative::yaml::parse_documents(text) {
            Ok(d) => docs.extend(d),
            Err(e) => errors.push(format!("{name}: line {}: {}", e.line, e.message)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Cluster::from_manifests(docs)
}

/// The failures by object, for reports.
pub fn by_object(failures: &[Failure]) -> BTreeMap<&ObjectRef, Vec<&str>> {
    let mut out: BTreeMap<&ObjectRef, Vec<&str>> = BTreeMap::new();
    for f in failures {
        out.entry(&f.object).or_default().push(&f.message);
    }
    out
}

#[cfg(test)]
mod tests;

//! A stand-in Kubernetes API server, because no kube-apiserver can be installed here. It
//! serves what the controller's real client (kube-rs) asks of one, with the semantics the
//! controller relies on:
//! - list (with `limit`/`continue` pages and label/field selectors) answering the current
//!   resourceVersion; every write bumps one cluster-wide resourceVersion;
//! - watch from a resourceVersion: the changes after it from the retained history, then live
//!   ones, as chunked JSON lines; BOOKMARK events when asked for; the stream ends at
//!   `timeoutSeconds`; a version older than the history (`compact`) gets an ERROR event with
//!   a 410 Expired Status, as a real server answers once etcd has compacted it;
//! - create (409 when it exists), replace (409 on a stale resourceVersion), merge patch (also of
//!   `/status`), delete, get (404 when missing);
//! - a bearer token on every call.
//!
//! Tests change objects through `apply`/`delete`, cut every open watch with `drop_watches`,
//! and read what the controller wrote (Events, Ingress status, the Lease) from `writes`.
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

pub const TOKEN: &str = "stand-in-token";

/// (group/version, kind, plural, namespaced)
const RESOURCES: &[(&str, &str, &str, bool)] = &[
    ("v1", "Service", "services", true),
    ("v1", "Secret", "secrets", true),
    (
        "discovery.k8s.io/v1",
        "EndpointSlice",
        "endpointslices",
        true,
    ),
    ("networking.k8s.io/v1", "Ingress", "ingresses", true),
    (
        "networking.k8s.io/v1",
        "IngressClass",
        "ingressclasses",
        false,
    ),
    (
        "configuration.konghq.com/v1",
        "KongPlugin",
        "kongplugins",
        true,
    ),
    (
        "configuration.konghq.com/v1",
        "KongClusterPlugin",
        "kongclusterplugins",
        false,
    ),
    (
        "configuration.konghq.com/v1",
        "KongConsumer",
        "kongconsumers",
        true,
    ),
    (
        "configuration.konghq.com/v1",
        "KongIngress",
        "kongingresses",
        true,
    ),
    (
        "configuration.konghq.com/v1beta1",
        "KongConsumerGroup",
        "kongconsumergroups",
        true,
    ),
    ("coordination.k8s.io/v1", "Lease", "leases", true),
    ("events.k8s.io/v1", "Event", "events", true),
];

/// One stored change, as watches replay it.
#[derive(Clone)]
struct Change {
    rv: u64,
    plural: &'static str,
    /// The watch event's type: ADDED, MODIFIED or DELETED.
    event: &'static str,
    object: Value,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    /// Versions at or below this are forgotten: a watch from one gets 410.
    floor: u64,
    /// (plural, namespace, name) → object
    objects: BTreeMap<(&'static str, String, String), Value>,
    history: Vec<Change>,
    /// (method, path, body) of every write a client made.
    writes: Vec<(String, String, Value)>,
    /// How many watches were answered 410 Gone.
    expired: usize,
    next_uid: u64,
}

/// The stand-in; stopped when dropped.
pub struct KubeApi {
    pub port: u16,
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<Change>,
    /// Bumped to end every open watch stream.
    cut: watch::Sender<u64>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<Change>,
    cut: watch::Receiver<u64>,
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl KubeApi {
    pub async fn start() -> KubeApi {
        let inner = Arc::new(Mutex::new(Inner {
            rv: 1000,
            ..Default::default()
        }));
        let (events, _) = broadcast::channel(100_000);
        let (cut, cut_rx) = watch::channel(0);
        let shared = Shared {
            inner: inner.clone(),
            events: events.clone(),
            cut: cut_rx,
        };
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        KubeApi {
            port,
            inner,
            events,
            cut,
            server,
        }
    }

    /// A kubeconfig file in `dir` that points kube's client here.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster: {{server: \"http://127.0.0.1:{}\"}}\nusers:\n- name: gateway\n  user: {{token: {TOKEN}}}\ncontexts:\n- name: standin\n  context: {{cluster: standin, user: gateway, namespace: tollgate}}\ncurrent-context: standin\n",
            self.port
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Creates or replaces each object of a YAML stream (as `kubectl apply` would).
    pub fn apply(&self, yaml: &str) {
        for doc in parse_stream(yaml) {
            let kind = doc["kind"].as_str().unwrap().to_string();
            let (_, _, plural, _) = resource_of_kind(&kind);
            let mut inner = self.inner.lock().unwrap();
            let change = inner.put(plural, doc);
            let _ = self.events.send(change);
        }
    }

    /// Deletes an object.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) {
        let (_, _, plural, _) = resource_of_kind(kind);
        let mut inner = self.inner.lock().unwrap();
        let change = inner
            .remove(plural, namespace, name)
            .expect("the object exists");
        let _ = self.events.send(change);
    }

    /// Forgets the history up to the next write: a watch resuming from any version seen so far
    /// gets 410 Gone, and only a list after the next write can watch again.
    pub fn compact(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.floor = inner.rv + 1;
        inner.history.clear();
    }

    /// How many watches were answered 410 Gone.
    pub fn expired(&self) -> usize {
        self.inner.lock().unwrap().expired
    }

    /// Ends every open watch stream, as a restarted API server or a dropped connection does.
    pub fn drop_watches(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// The writes clients made: (method, path, body).
    pub fn writes(&self) -> Vec<(String, String, Value)> {
        self.inner.lock().unwrap().writes.clone()
    }

    /// The stored object, if any.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let (_, _, plural, _) = resource_of_kind(kind);
        let inner = self.inner.lock().unwrap();
        inner
            .objects
            .get(&(plural, namespace.to_string(), name.to_string()))
            .cloned()
    }
}

impl Inner {
    fn put(&mut self, plural: &'static str, mut obj: Value) -> Change {
        self.rv += 1;
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        let key = (plural, ns, name);
        let existing = self.objects.get(&key);
        let uid = match existing {
            Some(e) => e["metadata"]["uid"].clone(),
            None => {
                self.next_uid += 1;
                json!(format!("00000000-0000-4000-8000-{:012}", self.next_uid))
            }
        };
        obj["metadata"]["uid"] = uid;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        if obj["metadata"]["creationTimestamp"].is_null() {
            obj["metadata"]["creationTimestamp"] = json!("2026-12-01T00:00:00Z");
        }
        let event = if existing.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.objects.insert(key, obj.clone());
        self.record(plural, event, obj)
    }

    fn remove(&mut self, plural: &'static str, ns: &str, name: &str) -> Option<Change> {
        let mut obj = self
            .objects
            .remove(&(plural, ns.to_string(), name.to_string()))?;
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        Some(self.record(plural, "DELETED", obj))
    }

    fn record(&mut self, plural: &'static str, event: &'static str, object: Value) -> Change {
        let c = Change {
            rv: self.rv,
            plural,
            event,
            object,
        };
        self.history.push(c.clone());
        c
    }
}

fn resource_of_kind(kind: &str) -> (&'static str, &'static str, &'static str, bool) {
    *RESOURCES
        .iter()
        .find(|r| r.1 == kind)
        .unwrap_or_else(|| panic!("the stand-in does not serve {kind}"))
}

fn parse_stream(yaml: &str) -> Vec<Value> {
    tollgate_gateway::declarative::yaml::parse_documents(yaml).expect("valid YAML")
}

/// A request's target: the resource, namespace, name and subresource.
struct Target {
    gv: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

fn target(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (gv, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => (v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(n.to_string()), None),
        [p, n, s] => (*p, Some(n.to_string()), Some(*s)),
        _ => return None,
    };
    let r = RESOURCES.iter().find(|r| r.0 == gv && r.2 == plural)?;
    Some(Target {
        gv: r.0,
        kind: r.1,
        plural: r.2,
        namespace,
        name,
        status: sub == Some("status"),
    })
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": reason, "code": code});
    (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response()
}

async fn handle(State(s): State<Shared>, req: Request) -> Response {
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    if !authorized {
        return status(401, "Unauthorized", "Unauthorized");
    }
    let Some(t) = target(req.uri().path()) else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let body = axum::body::to_bytes(req.into_body(), 16 << 20)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if method != Method::GET {
        s.inner
            .lock()
            .unwrap()
            .writes
            .push((method.to_string(), path, body.clone()));
    }
    match (&method, &t.name) {
        (&Method::GET, None) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch_stream(&s, &t, &query)
        }
        (&Method::GET, None) => list(&s, &t, &query),
        (&Method::GET, Some(name)) => match get_one(&s, &t, name) {
            Some(o) => axum::Json(o).into_response(),
            None => status(
                404,
                "NotFound",
                &format!("{} \"{name}\" not found", t.plural),
            ),
        },
        (&Method::POST, None) => create(&s, &t, body),
        (&Method::PUT, Some(name)) => replace(&s, &t, name, body),
        (&Method::PATCH, Some(name)) => patch(&s, &t, name, body),
        (&Method::DELETE, Some(name)) => {
            let mut inner = s.inner.lock().unwrap();
            let ns = t.namespace.clone().unwrap_or_default();
            match inner.remove(t.plural, &ns, name) {
                Some(c) => {
                    let obj = c.object.clone();
                    let _ = s.events.send(c);
                    axum::Json(obj).into_response()
                }
                None => status(404, "NotFound", "not found"),
            }
        }
        _ => status(405, "MethodNotAllowed", "method not allowed"),
    }
}

fn get_one(s: &Shared, t: &Target, name: &str) -> Option<Value> {
    let inner = s.inner.lock().unwrap();
    let ns = t.namespace.clone().unwrap_or_default();
    inner
        .objects
        .get(&(t.plural, ns, name.to_string()))
        .cloned()
}

/// Whether `obj` passes `labelSelector` / `fieldSelector` (`a=b`, `a==b`, `a!=b`, comma-joined).
fn selected(obj: &Value, query: &HashMap<String, String>) -> bool {
    let check = |sel: Option<&String>, lookup: &dyn Fn(&str) -> Option<String>| {
        sel.map(String::as_str)
            .unwrap_or("")
            .split(',')
            .filter(|c| !c.is_empty())
            .all(|c| {
                if let Some((k, v)) = c.split_once("!=") {
                    lookup(k).as_deref() != Some(v)
                } else if let Some((k, v)) = c.split_once('=') {
                    lookup(k).as_deref() == Some(v.trim_start_matches('='))
                } else {
                    lookup(c).is_some()
                }
            })
    };
    let label = |k: &str| obj["metadata"]["labels"][k].as_str().map(String::from);
    let field = |k: &str| {
        let mut v = obj;
        for part in k.split('.') {
            v = &v[part];
        }
        v.as_str().map(String::from)
    };
    check(query.get("labelSelector"), &label) && check(query.get("fieldSelector"), &field)
}

fn in_scope(obj: &Value, t: &Target) -> bool {
    t.namespace
        .as_deref()
        .is_none_or(|ns| obj["metadata"]["namespace"] == ns)
}

fn list(s: &Shared, t: &Target, query: &HashMap<String, String>) -> Response {
    let inner = s.inner.lock().unwrap();
    let items: Vec<Value> = inner
        .objects
        .iter()
        .filter(|((p, _, _), o)| *p == t.plural && in_scope(o, t) && selected(o, query))
        .map(|(_, o)| o.clone())
        .collect();
    let start: usize = query
        .get("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let page: Vec<Value> = items.iter().skip(start).take(limit).cloned().collect();
    let mut meta = json!({"resourceVersion": inner.rv.to_string()});
    if start + page.len() < items.len() {
        meta["continue"] = json!((start + page.len()).to_string());
    }
    axum::Json(json!({"apiVersion": t.gv, "kind": format!("{}List", t.kind), "metadata": meta, "items": page}))
        .into_response()
}

fn watch_stream(s: &Shared, t: &Target, query: &HashMap<String, String>) -> Response {
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1800u64);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(1024);
    let line = |v: Value| Ok(format!("{v}\n"));
    // History and subscription are taken under one lock, so no change falls between them.
    let (backlog, mut live, expired, current) = {
        let mut inner = s.inner.lock().unwrap();
        let expired = from != 0 && from < inner.floor;
        inner.expired += usize::from(expired);
        let backlog: Vec<Change> = inner
            .history
            .iter()
            .filter(|c| c.rv > from && c.plural == t.plural && in_scope(&c.object, t))
            .cloned()
            .collect();
        (backlog, s.events.subscribe(), expired, inner.rv)
    };
    let mut cut = s.cut.clone();
    cut.mark_unchanged();
    let (plural, gv, kind) = (t.plural, t.gv, t.kind);
    let namespace = t.namespace.clone();
    let query = query.clone();
    tokio::spawn(async move {
        if expired {
            let st = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("too old resource version: {from} ({current})"), "reason": "Expired", "code": 410});
            let _ = tx.send(line(json!({"type": "ERROR", "object": st}))).await;
            return;
        }
        let matches = |c: &Change| {
            c.plural == plural
                && namespace
                    .as_deref()
                    .is_none_or(|ns| c.object["metadata"]["namespace"] == ns)
                && selected(&c.object, &query)
        };
        let mut last = from.max(current);
        for c in backlog.iter().filter(|c| selected(&c.object, &query)) {
            if tx
                .send(line(json!({"type": c.event, "object": c.object})))
                .await
                .is_err()
            {
                return;
            }
        }
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = cut.changed() => return,
                _ = tick.tick(), if bookmarks => {
                    let bm = json!({"type": "BOOKMARK", "object": {"apiVersion": gv, "kind": kind,
                        "metadata": {"resourceVersion": last.to_string()}}});
                    if tx.send(line(bm)).await.is_err() { return; }
                }
                c = live.recv() => match c {
                    Ok(c) => {
                        if c.rv <= from { continue; }
                        last = last.max(c.rv);
                        if matches(&c) && tx.send(line(json!({"type": c.event, "object": c.object}))).await.is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                },
            }
        }
    });
    let stream = tokio_stream_of(rx);
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<Result<String, std::io::Error>>,
) -> impl futures::Stream<Item = Result<String, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn create(s: &Shared, t: &Target, mut body: Value) -> Response {
    let mut inner = s.inner.lock().unwrap();
    if let Some(ns) = &t.namespace {
        body["metadata"]["namespace"] = json!(ns);
    }
    let ns = body["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let Some(name) = body["metadata"]["name"].as_str().map(String::from) else {
        return status(422, "Invalid", "metadata.name: Required value");
    };
    if inner.objects.contains_key(&(t.plural, ns, name.clone())) {
        return status(
            409,
            "AlreadyExists",
            &format!("{} \"{name}\" already exists", t.plural),
        );
    }
    body["apiVersion"] = json!(t.gv);
    body["kind"] = json!(t.kind);
    let c = inner.put(t.plural, body);
    let obj = c.object.clone();
    let _ = s.events.send(c);
    (StatusCode::CREATED, axum::Json(obj)).into_response()
}

fn replace(s: &Shared, t: &Target, name: &str, mut body: Value) -> Response {
    let mut inner = s.inner.lock().unwrap();
    let ns = t.namespace.clone().unwrap_or_default();
    let Some(existing) = inner.objects.get(&(t.plural, ns.clone(), name.to_string())) else {
        return status(
            404,
            "NotFound",
            &format!("{} \"{name}\" not found", t.plural),
        );
    };
    let sent = body["metadata"]["resourceVersion"].clone();
    if !sent.is_null() && sent != existing["metadata"]["resourceVersion"] {
        return status(
            409,
            "Conflict",
            "the object has been modified; please apply your changes to the latest version and try again",
        );
    }
    body["metadata"]["namespace"] = json!(ns);
    body["apiVersion"] = json!(t.gv);
    body["kind"] = json!(t.kind);
    let c = inner.put(t.plural, body);
    let obj = c.object.clone();
    let _ = s.events.send(c);
    axum::Json(obj).into_response()
}

/// JSON merge patch (RFC 7386); on `/status` only the status changes.
fn patch(s: &Shared, t: &Target, name: &str, body: Value) -> Response {
    let mut inner = s.inner.lock().unwrap();
    let ns = t.namespace.clone().unwrap_or_default();
    let Some(mut obj) = inner
        .objects
        .get(&(t.plural, ns, name.to_string()))
        .cloned()
    else {
        return status(
            404,
            "NotFound",
            &format!("{} \"{name}\" not found", t.plural),
        );
    };
    if t.status {
        merge(&mut obj["status"], &body["status"]);
    } else {
        merge(&mut obj, &body);
    }
    let c = inner.put(t.plural, obj);
    let obj = c.object.clone();
    let _ = s.events.send(c);
    axum::Json(obj).into_response()
}

fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().unwrap();
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

//! Where a Kong service sends: its Kubernetes Service's port, the Service's annotations
//! (protocol, path, timeouts, retries), and an upstream named as the service's host whose
//! targets are the ready EndpointSlice addresses (KIC's `translate_upstreams.go`), so the
//! balancer and its health checks apply to pods as to any targets.
use super::annotations::{self as ann};
use super::ingress::{KongService, PortDef};
use super::objects::{api_version, ObjectRef};
use super::{Failures, Index};
use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use tollgate_gateway::model::{self, Kind, Source};

/// Completes each service from its backend and returns the upstreams, by name.
pub fn complete(
    services: &mut BTreeMap<String, KongService>,
    index: &Index,
    failures: &mut Failures,
) -> Vec<Value> {
    let mut upstreams = Vec::new();
    for s in services.values_mut() {
        let host = s.fields["host"].as_str().unwrap_or_default().to_string();
        let mut upstream = Map::new();
        upstream.insert("name".into(), json!(host));
        let mut targets = BTreeMap::new();
        match index
            .services
            .get(&(s.namespace.as_str(), s.backend.as_str()))
        {
            None => failures.push(
                &s.parent,
                format!(
                    "can't add target for backend {}: no kubernetes service found",
                    s.backend
                ),
            ),
            Some(k8s) => {
                let origin = ObjectRef::new("Service", api_version("Service"), &k8s.metadata);
                s.fields.insert("tags".into(), json!(origin.tags()));
                match find_port(k8s, &s.port) {
                    Err(e) => failures.push_all(
                        &[&origin, &s.parent],
                        format!("can't find port for backend kubernetes service: {e}"),
                    ),
                    Ok(port) => {
                        s.fields.insert("port".into(), json!(port.port));
                        for t in endpoints(k8s, &port, index) {
                            *targets.entry(t).or_insert(0) += 100;
                        }
                    }
                }
                let anns = k8s.metadata.annotations.clone().unwrap_or_default();
                override_service(&mut s.fields, &anns, &origin, failures);
                override_upstream(&mut upstream, k8s, &origin, index, failures);
            }
        }
        let tags = s.fields["tags"].clone();
        upstream.insert("tags".into(), tags.clone());
        let targets: Vec<Value> = targets
            .into_iter()
            .map(|(t, w)| json!({"target": t, "weight": w, "tags": tags}))
            .collect();
        upstream.insert("targets".into(), Value::Array(targets));
        upstreams.push(Value::Object(upstream));
    }
    upstreams
}

/// The Service port an Ingress backend names (KIC's `findPort`).
fn find_port(svc: &Service, want: &PortDef) -> Result<ServicePort, String> {
    let spec = svc.spec.clone().unwrap_or_default();
    let external = spec.type_.as_deref() == Some("ExternalName");
    let ports = spec.ports.unwrap_or_default();
    let found = match want {
        PortDef::Number(n) if external => Some(ServicePort {
            port: *n,
            target_port: Some(IntOrString::Int(*n)),
            ..Default::default()
        }),
        PortDef::Number(n) => ports.into_iter().find(|p| p.port == *n),
        _ if external => {
            return Err("rules with an ExternalName service must specify numeric ports".into())
        }
        PortDef::Name(name) => ports.into_iter().find(|p| {
            p.name.as_deref() == Some(name)
                || matches!(&p.target_port, Some(IntOrString::String(t)) if t == name)
        }),
        PortDef::Implicit if ports.len() == 1 => ports.into_iter().next(),
        PortDef::Implicit => {
            return Err(format!(
                "in implicit mode, service must have exactly 1 port, has {}",
                ports.len()
            ))
        }
    };
    found.ok_or_else(|| "no suitable port found".to_string())
}

/// `address:port` of each ready endpoint of the Service's port (KIC's `getEndpoints`).
fn endpoints(svc: &Service, port: &ServicePort, index: &Index) -> Vec<String> {
    let spec = svc.spec.clone().unwrap_or_default();
    let meta = &svc.metadata;
    let ns = meta.namespace.as_deref().unwrap_or_default();
    let name = meta.name.as_deref().unwrap_or_default();
    let anns = meta.annotations.clone().unwrap_or_default();
    if anns
        .get("ingress.kubernetes.io/service-upstream")
        .map(String::as_str)
        == Some("true")
    {
        return vec![format!("{name}.{ns}.svc:{}", port.port)];
    }
    if spec.type_.as_deref() == Some("ExternalName") {
        let target = match &port.target_port {
            Some(IntOrString::Int(n)) => n.to_string(),
            Some(IntOrString::String(s)) => s.clone(),
            None => port.port.to_string(),
        };
        return vec![format!(
            "{}:{target}",
            spec.external_name.unwrap_or_default()
        )];
    }
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    let mut out: Vec<String> = Vec::new();
    for slice in index.slices.get(&(ns, name)).into_iter().flatten() {
        for p in slice.ports.iter().flatten() {
            let matches = p.port.is_some_and(|n| n >= 0)
                && p.protocol.as_deref().unwrap_or("TCP") == protocol
                && p.name.as_deref().unwrap_or("") == port.name.as_deref().unwrap_or("");
            if !matches {
                continue;
            }
            let number = p.port.unwrap_or_default();
            for e in slice.endpoints.iter().flatten() {
                let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                let Some(addr) = e.addresses.first().filter(|_| ready) else {
                    continue;
                };
                let addr = if addr.contains(':') {
                    format!("[{addr}]")
                } else {
                    addr.clone()
                };
                let t = format!("{addr}:{number}");
                if !out.contains(&t) {
                    out.push(t);
                }
            }
        }
    }
    out
}

/// KIC's `Service.overrideByAnnotation`: the Kubernetes Service's annotations over the Kong
/// service's defaults.
fn override_service(
    f: &mut Map<String, Value>,
    a: &ann::Annotations,
    origin: &ObjectRef,
    failures: &mut Failures,
) {
    if let Some(p) = ann::get(a, "protocol") {
        if ann::PROTOCOLS.contains(&p) {
            f.insert("protocol".into(), json!(p));
        } else {
            failures.push(
                origin,
                format!("konghq.com/protocol annotation has invalid value: {p}"),
            );
        }
    }
    if let Some(p) = ann::get(a, "path").filter(|p| p.starts_with('/')) {
        f.insert("path".into(), json!(p));
    }
    for (key, field) in [
        ("connect-timeout", "connect_timeout"),
        ("write-timeout", "write_timeout"),
        ("read-timeout", "read_timeout"),
        ("retries", "retries"),
    ] {
        if let Some(v) = ann::integer(a, key) {
            f.insert(field.into(), json!(v));
        }
    }
    if let Some(v) = ann::boolean(a, "tls-verify") {
        f.insert("tls_verify".into(), json!(v));
    }
    if let Some(v) = ann::integer(a, "tls-verify-depth") {
        f.insert("tls_verify_depth".into(), json!(v));
    }
    if f["protocol"]
        .as_str()
        .is_some_and(|p| p.starts_with("grpc"))
    {
        f.remove("path");
    }
}

/// The upstream's `host_header` annotation and the KongIngress a Service names with
/// `konghq.com/override` (its `upstream` section, checked against the upstream schema).
fn override_upstream(
    u: &mut Map<String, Value>,
    svc: &Service,
    origin: &ObjectRef,
    index: &Index,
    failures: &mut Failures,
) {
    let anns = svc.metadata.annotations.clone().unwrap_or_default();
    if let Some(h) = ann::get(&anns, "host-header") {
        u.insert("host_header".into(), json!(h));
    }
    let Some(name) = ann::get(&anns, "override") else {
        return;
    };
    let ns = origin.namespace.as_deref().unwrap_or_default();
    let Some(ki) = index.kong_ingresses.get(&(ns, name)) else {
        return failures.push(
            origin,
            format!("KongIngress {ns}/{name} named by konghq.com/override does not exist"),
        );
    };
    let ki_ref = ObjectRef::new("KongIngress", api_version("KongIngress"), &ki.metadata);
    if ki.proxy.is_some() || ki.route.is_some() {
        failures.push(
            &ki_ref,
            "KongIngress proxy and route sections are not applied (use the Service's and Ingress's konghq.com annotations)",
        );
    }
    let Some(section) = &ki.upstream else { return };
    let mut candidate = u.clone();
    candidate.remove("targets");
    for (k, v) in section {
        candidate.insert(k.clone(), v.clone());
    }
    match model::normalize(Kind::Upstream, candidate.clone(), None, Source::Typed, 0) {
        Ok(_) => *u = candidate,
        Err(e) => failures.push_all(
            &[&ki_ref, origin],
            format!("KongIngress upstream is invalid: {}", e.message()),
        ),
    }
}

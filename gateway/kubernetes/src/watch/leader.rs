//! One replica writes Ingress status: the holder of a coordination.k8s.io Lease, taken and
//! renewed with the API server's optimistic concurrency (a write with a stale resourceVersion
//! is refused, so two replicas cannot both take an expired lease). The holder copies the
//! gateway's own Service address (its load balancer's, else its external IPs, else its
//! cluster IP) into `status.loadBalancer` of every Ingress the controller serves. Every
//! replica proxies whether it holds the lease or not.
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::watch;

/// How long a lease holds without renewal, and how often the holder renews it.
pub const LEASE_SECONDS: i32 = 15;
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

/// Who competes for which lease.
#[derive(Clone, Debug)]
pub struct Election {
    pub namespace: String,
    pub lease: String,
    pub identity: String,
}

/// What the status writer needs from the latest translation: the Ingresses served (with the
/// load-balancer status each has now) and the gateway's Service.
#[derive(Clone, Default, PartialEq)]
pub struct StatusWork {
    pub ingresses: Vec<(String, String, Value)>,
    pub address: Vec<Value>,
}

/// Competes for the lease until `stop`; while holding it, keeps the served Ingresses'
/// status in step with `work`. `leading` tells the rest of the controller whether this
/// replica holds the lease.
pub async fn run(
    client: Client,
    election: Election,
    mut work: watch::Receiver<StatusWork>,
    leading_tx: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &election.namespace);
    loop {
        let leading = match try_lead(&leases, &election).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read or renew the leader lease");
                false
            }
        };
        leading_tx.send_if_modified(|l| std::mem::replace(l, leading) != leading);
        if leading {
            let current = work.borrow_and_update().clone();
            write_status(&client, &current).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(RENEW_EVERY) => {}
            _ = work.changed(), if leading => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Takes or renews the lease; whether this replica holds it now.
async fn try_lead(leases: &Api<Lease>, e: &Election) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let Some(lease) = leases.get_opt(&e.lease).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(e.lease.clone()),
                namespace: Some(e.namespace.clone()),
                ..Default::default()
            },
            spec: Some(held(e, now, now, 0)),
        };
        return match leases.create(&PostParams::default(), &lease).await {
            Ok(_) => {
                tracing::info!(identity = %e.identity, "took the leader lease");
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(err) => Err(err),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let mine = spec.holder_identity.as_deref() == Some(e.identity.as_str());
    let expired = spec.renew_time.as_ref().is_none_or(|t| {
        let seconds = spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS);
        t.0 + SignedDuration::from_secs(i64::from(seconds)) < now
    });
    if !mine && !expired {
        return Ok(false);
    }
    let acquired = match (&spec.acquire_time, mine) {
        (Some(t), true) => t.0,
        _ => now,
    };
    let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
    let mut next = lease.clone();
    next.spec = Some(held(e, acquired, now, transitions));
    match leases
        .replace(&e.lease, &PostParams::default(), &next)
        .await
    {
        Ok(_) => {
            if !mine {
                tracing::info!(identity = %e.identity, "took the leader lease");
            }
            Ok(true)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(err) => Err(err),
    }
}

fn held(e: &Election, acquired: Timestamp, now: Timestamp, transitions: i32) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(e.identity.clone()),
        lease_duration_seconds: Some(LEASE_SECONDS),
        acquire_time: Some(MicroTime(acquired)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..Default::default()
    }
}

/// The gateway Service's address as Ingress status lists it.
pub fn address(svc: &Service) -> Vec<Value> {
    let lb: Vec<Value> = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .into_iter()
        .flatten()
        .map(|i| {
            let mut v = json!({});
            if let Some(ip) = &i.ip {
                v["ip"] = json!(ip);
            }
            if let Some(h) = &i.hostname {
                v["hostname"] = json!(h);
            }
            v
        })
        .collect();
    if !lb.is_empty() {
        return lb;
    }
    let spec = svc.spec.clone().unwrap_or_default();
    let external: Vec<Value> = spec
        .external_ips
        .unwrap_or_default()
        .into_iter()
        .map(|ip| json!({"ip": ip}))
        .collect();
    if !external.is_empty() {
        return external;
    }
    spec.cluster_ip
        .filter(|ip| !ip.is_empty() && ip != "None")
        .map(|ip| vec![json!({"ip": ip})])
        .unwrap_or_default()
}

/// The load-balancer status an Ingress has now.
pub fn current(ing: &Ingress) -> Value {
    ing.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .map(|i| serde_json::to_value(i).unwrap_or(Value::Null))
        .unwrap_or_else(|| json!([]))
}

async fn write_status(client: &Client, work: &StatusWork) {
    if work.address.is_empty() {
        return;
    }
    let want = Value::Array(work.address.clone());
    for (ns, name, now) in &work.ingresses {
        if *now == want {
            continue;
        }
        let api: Api<Ingress> = Api::namespaced(client.clone(), ns);
        let patch = json!({"status": {"loadBalancer": {"ingress": want}}});
        if let Err(e) = api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(ingress = %format!("{ns}/{name}"), error = %e, "cannot write Ingress status");
        }
    }
}

//! The cluster's objects kept current by kube's reflectors (list, then watch from the list's
//! resourceVersion; on a dropped watch they resume from the last version seen, on 410 Gone
//! they list again), each change a nudge to the controller's loop.
use crate::translate::objects::{Cluster, KONG_GROUP};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, store::Writer, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// Secrets a gateway never reads: service-account tokens and Helm's release records, the bulk
/// of most clusters' Secrets, are left out of the watch.
const SECRET_FIELDS: &str = "type!=kubernetes.io/service-account-token,type!=helm.sh/release.v1";

/// Kong's CRDs the controller reads: (kind, version, plural).
const KONG_CRDS: [(&str, &str, &str); 5] = [
    ("KongPlugin", "v1", "kongplugins"),
    ("KongClusterPlugin", "v1", "kongclusterplugins"),
    ("KongConsumer", "v1", "kongconsumers"),
    ("KongIngress", "v1", "kongingresses"),
    ("KongConsumerGroup", "v1beta1", "kongconsumergroups"),
];

/// The reflectors' stores.
pub struct Stores {
    ingresses: Store<Ingress>,
    ingress_classes: Store<IngressClass>,
    services: Store<Service>,
    endpoint_slices: Store<EndpointSlice>,
    secrets: Store<Secret>,
    /// Kong's CRDs, in `KONG_CRDS` order.
    kong: Vec<Store<DynamicObject>>,
}

impl Stores {
    /// Starts a reflector per kind on `tasks`; each event notifies `changed`.
    pub fn start(client: &Client, changed: &Arc<Notify>, tasks: &mut JoinSet<()>) -> Stores {
        let cfg = watcher::Config::default();
        let kong = KONG_CRDS
            .iter()
            .map(|(kind, version, plural)| {
                let gvk = GroupVersionKind::gvk(KONG_GROUP, version, kind);
                let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
                let api = Api::<DynamicObject>::all_with(client.clone(), &ar);
                reflect(api, ar, cfg.clone(), changed, tasks)
            })
            .collect();
        Stores {
            ingresses: reflect(Api::all(client.clone()), (), cfg.clone(), changed, tasks),
            ingress_classes: reflect(Api::all(client.clone()), (), cfg.clone(), changed, tasks),
            services: reflect(Api::all(client.clone()), (), cfg.clone(), changed, tasks),
            endpoint_slices: reflect(Api::all(client.clone()), (), cfg.clone(), changed, tasks),
            secrets: reflect(
                Api::all(client.clone()),
                (),
                cfg.fields(SECRET_FIELDS),
                changed,
                tasks,
            ),
            kong,
        }
    }

    /// Resolves once every reflector has listed its kind.
    pub async fn ready(&self) {
        let _ = self.ingresses.wait_until_ready().await;
        let _ = self.ingress_classes.wait_until_ready().await;
        let _ = self.services.wait_until_ready().await;
        let _ = self.endpoint_slices.wait_until_ready().await;
        let _ = self.secrets.wait_until_ready().await;
        for s in &self.kong {
            let _ = s.wait_until_ready().await;
        }
    }

    /// How many objects of each kind are held.
    pub fn counts(&self) -> serde_json::Value {
        let mut m = serde_json::json!({
            "Ingress": self.ingresses.len(),
            "IngressClass": self.ingress_classes.len(),
            "Service": self.services.len(),
            "EndpointSlice": self.endpoint_slices.len(),
            "Secret": self.secrets.len(),
        });
        for ((kind, _, _), s) in KONG_CRDS.iter().zip(&self.kong) {
            m[*kind] = s.len().into();
        }
        m
    }

    /// The objects as they stand now.
    pub fn cluster(&self) -> Cluster {
        Cluster {
            ingresses: owned(&self.ingresses),
            ingress_classes: owned(&self.ingress_classes),
            services: owned(&self.services),
            endpoint_slices: owned(&self.endpoint_slices),
            secrets: owned(&self.secrets),
            kong_plugins: typed(&self.kong[0]),
            kong_cluster_plugins: typed(&self.kong[1]),
            kong_consumers: typed(&self.kong[2]),
            kong_ingresses: typed(&self.kong[3]),
            kong_consumer_groups: typed(&self.kong[4]),
        }
    }
}

/// A reflector on `api`, driven on `tasks` (retrying with kube's backoff after errors).
fn reflect<K>(
    api: Api<K>,
    dyntype: K::DynamicType,
    cfg: watcher::Config,
    changed: &Arc<Notify>,
    tasks: &mut JoinSet<()>,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    let writer = Writer::new(dyntype);
    let reader = writer.as_reader();
    let changed = changed.clone();
    let kind = std::any::type_name::<K>();
    let stream = reflector::reflector(writer, watcher(api, cfg).default_backoff());
    tasks.spawn(async move {
        stream
            .for_each(|event| {
                match event {
                    Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                    Ok(_) => changed.notify_one(),
                    Err(e) => tracing::warn!(kind, error = %e, "watch failed; retrying"),
                }
                async {}
            })
            .await;
    });
    reader
}

fn owned<K: Clone + kube::Resource>(s: &Store<K>) -> Vec<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    s.state().iter().map(|o| (**o).clone()).collect()
}

/// A CRD's objects as their typed form; one that does not parse is skipped (the API server's
/// schema validation normally keeps such objects out).
fn typed<T: DeserializeOwned>(s: &Store<DynamicObject>) -> Vec<T> {
    s.state()
        .iter()
        .filter_map(|o| {
            let v = serde_json::to_value(&**o).ok()?;
            match serde_json::from_value(v) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(name = ?o.metadata.name, error = %e, "unreadable Kong object skipped");
                    None
                }
            }
        })
        .collect()
}

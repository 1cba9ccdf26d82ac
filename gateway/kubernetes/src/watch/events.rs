//! Translation failures as Kubernetes Events on the objects at fault (Warning,
//! `KongConfigurationTranslationFailed`, as KIC reports them), so `kubectl describe` shows why
//! an Ingress or a KongPlugin is not served. A failure is published when it first appears, not
//! on every translation; kube's recorder folds repeats into one Event's series.
use crate::translate::{Failure, ObjectRef};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;
use std::collections::HashSet;

/// The Event reason KIC gives translation failures.
pub const REASON: &str = "KongConfigurationTranslationFailed";
/// The most Events one translation publishes (the rest stay on `/status`).
const MAX_PER_ROUND: usize = 200;

pub struct Events {
    recorder: Recorder,
    published: HashSet<(ObjectRef, String)>,
}

impl Events {
    pub fn new(client: Client, instance: String) -> Events {
        let reporter = Reporter {
            controller: "tollgate".into(),
            instance: Some(instance),
        };
        Events {
            recorder: Recorder::new(client, reporter),
            published: HashSet::new(),
        }
    }

    /// Publishes the failures not already published; forgets those that went away, so a
    /// failure that comes back is published again.
    pub async fn publish(&mut self, failures: &[Failure]) {
        let now: HashSet<(ObjectRef, String)> = failures
            .iter()
            .map(|f| (f.object.clone(), f.message.clone()))
            .collect();
        self.published.retain(|f| now.contains(f));
        let fresh: Vec<&(ObjectRef, String)> = now
            .iter()
            .filter(|f| !self.published.contains(*f))
            .take(MAX_PER_ROUND)
            .collect();
        for (object, message) in fresh {
            let event = Event {
                type_: EventType::Warning,
                reason: REASON.into(),
                note: Some(truncate(message)),
                action: "Translate".into(),
                secondary: None,
            };
            match self.recorder.publish(&event, &reference(object)).await {
                Ok(()) => {
                    self.published.insert((object.clone(), message.clone()));
                }
                Err(e) => {
                    tracing::warn!(object = %object.describe(), error = %e, "cannot publish an Event")
                }
            }
        }
    }
}

fn reference(o: &ObjectRef) -> ObjectReference {
    ObjectReference {
        api_version: Some(o.api_version.into()),
        kind: Some(o.kind.into()),
        namespace: o.namespace.clone(),
        name: Some(o.name.clone()),
        uid: o.uid.clone(),
        ..Default::default()
    }
}

/// An Event's note is at most 1 kB.
fn truncate(message: &str) -> String {
    if message.len() <= 1000 {
        return message.to_string();
    }
    let mut end = 1000;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

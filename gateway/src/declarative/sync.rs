//! The difference between what runs and what a file wants (`tollgate config apply`). What the
//! developer portal made (applications' consumers, their keys, their plans' plugins) is not
//! the file's to delete: a file lists the operator's configuration, not the developers'.
use crate::model::{Kind, Record};
use crate::store::portal::{APPLICATION_TAG, PLAN_TAG};
use serde_json::Value;
use std::collections::HashMap;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Update,
    Delete,
}

/// One step of a sync: what to do to which entity, and the body to send for creates/updates.
#[derive(Debug, Clone)]
pub struct Change {
    pub op: Op,
    pub kind: Kind,
    pub id: Uuid,
    pub body: Value,
}

impl Change {
    /// `create route api (9b1c...)`
    pub fn describe(&self) -> String {
        let op = match self.op {
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
        };
        let name = ["name", "username", "custom_id"]
            .iter()
            .find_map(|f| self.body.get(*f).and_then(Value::as_str));
        match name {
            Some(n) => format!("{op} {} {n} ({})", self.kind.collection(), self.id),
            None => format!("{op} {} {}", self.kind.collection(), self.id),
        }
    }
}

/// What a sync compares: the body without its timestamps.
fn comparable(body: &Value) -> Value {
    let mut b = body.clone();
    if let Some(m) = b.as_object_mut() {
        m.remove("created_at");
        m.remove("updated_at");
    }
    b
}

/// The consumers the developer portal made for applications (a file does not list them).
fn portal_consumers(current: &[(Kind, Value)]) -> Vec<&str> {
    current
        .iter()
        .filter(|(k, b)| *k == Kind::Consumer && tagged(b, APPLICATION_TAG))
        .filter_map(|(_, b)| b.get("id")?.as_str())
        .collect()
}

/// Whether the developer portal owns `body`: an application's consumer, a plan's plugin, or
/// anything on an application's consumer (its keys). A sync leaves them alone.
fn portal_owned(body: &Value, portal: &[&str]) -> bool {
    let on_portal_consumer = body["consumer"]["id"]
        .as_str()
        .is_some_and(|c| portal.contains(&c));
    tagged(body, APPLICATION_TAG) || tagged(body, PLAN_TAG) || on_portal_consumer
}

fn tagged(body: &Value, tag: &str) -> bool {
    body["tags"]
        .as_array()
        .is_some_and(|t| t.iter().any(|x| x == tag))
}

/// The changes that turn `current` into `desired`: creates and updates parents first,
/// deletes children first.
pub fn plan(current: &[(Kind, Value)], desired: &[Record]) -> Vec<Change> {
    let now: HashMap<(Kind, String), &Value> = current
        .iter()
        .filter_map(|(k, b)| Some(((*k, b.get("id")?.as_str()?.to_string()), b)))
        .collect();
    let mut wanted = std::collections::HashSet::new();
    let mut changes = Vec::new();
    for r in desired {
        wanted.insert((r.kind, r.id.to_string()));
        let body = comparable(&r.body);
        let op = match now.get(&(r.kind, r.id.to_string())) {
            None => Op::Create,
            Some(b) if comparable(b) != body => Op::Update,
            Some(_) => continue,
        };
        changes.push(Change {
            op,
            kind: r.kind,
            id: r.id,
            body,
        });
    }
    changes.sort_by_key(|c| c.kind);
    let portal = portal_consumers(current);
    let mut deletes: Vec<Change> = current
        .iter()
        .filter_map(|(k, b)| {
            let id = b.get("id")?.as_str()?;
            if wanted.contains(&(*k, id.to_string())) || portal_owned(b, &portal) {
                return None;
            }
            Some(Change {
                op: Op::Delete,
                kind: *k,
                id: Uuid::parse_str(id).ok()?,
                body: comparable(b),
            })
        })
        .collect();
    deletes.sort_by_key(|c| std::cmp::Reverse(c.kind));
    changes.extend(deletes);
    changes
}

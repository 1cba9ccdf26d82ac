//! The edits themselves: one request's rendered entries applied to its headers, to name/value
//! pairs (query string, form body), to a JSON object and to multipart parts, each as Kong's
//! access.lua applies them.
use super::config::{Entry, Group};
use super::template::{Env, Template};
use super::BodyKind;
use crate::plugins::multipart::Multipart;
use crate::plugins::Context;
use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, HeaderValue};
use serde_json::{Map, Value};

/// The part of the request an entry changes.
#[derive(Clone, Copy)]
pub enum Target {
    Headers,
    Querystring,
    Body,
}

const REMOVE: usize = 0;
const RENAME: usize = 1;
const REPLACE: usize = 2;
const ADD: usize = 3;
const APPEND: usize = 4;

/// One request's values of the entries: their config's groups, and what each template
/// rendered (by `Entry::slot`), rendered up front because templates read the request as it
/// came, before any edit. Plain values are read from the config, not copied.
pub struct Rendered<'s> {
    groups: &'s [Group; 5],
    /// Inline for the usual few templates: one allocation less per request.
    templates: smallvec::SmallVec<[String; 4]>,
}

impl<'s> Rendered<'s> {
    /// `templates` are the entries' template values in `Entry::slot` order.
    pub fn new(groups: &'s [Group; 5], templates: &[Template], env: &Env<'_>) -> Rendered<'s> {
        let templates = templates.iter().map(|t| t.render(env)).collect();
        Rendered { groups, templates }
    }

    fn items(&self, op: usize, target: Target) -> &'s [Entry] {
        let g = &self.groups[op];
        match target {
            Target::Headers => &g.headers,
            Target::Querystring => &g.querystring,
            Target::Body => &g.body,
        }
    }

    /// Whether any operation touches `target`.
    pub fn has(&self, target: Target) -> bool {
        (0..5).any(|op| !self.items(op, target).is_empty())
    }

    /// The values with something to set (an empty value sets nothing, as in Kong).
    fn values(&self, op: usize, target: Target) -> impl Iterator<Item = (&'s Entry, &str)> {
        self.items(op, target).iter().filter_map(|e| {
            let value = match (e.slot, &e.value) {
                (Some(slot), _) => self.templates[slot].as_str(),
                (None, Some(t)) => t.plain()?,
                (None, None) => return None,
            };
            (!value.is_empty()).then_some((e, value))
        })
    }

    /// Header entries with something to set, as header values (a rendered value that cannot
    /// be one is skipped).
    fn header_values(&self, op: usize) -> impl Iterator<Item = (&'s Entry, &str, HeaderValue)> {
        self.values(op, Target::Headers).filter_map(|(e, v)| {
            let value = match &e.fixed {
                Some(fixed) => fixed.clone(),
                None => HeaderValue::from_str(v).ok()?,
            };
            Some((e, v, value))
        })
    }

    /// Edits the upstream request's headers; returns the `Host` that `replace` sets, which
    /// the gateway writes itself (the other operations leave `Host` alone).
    pub fn headers(&self, h: &mut HeaderMap) -> Option<String> {
        let t = Target::Headers;
        for e in self.items(REMOVE, t) {
            if let Some(name) = e.header.as_ref().filter(|n| **n != HOST) {
                h.remove(name);
            }
        }
        for (e, new) in self.values(RENAME, t) {
            let new = match &e.renamed {
                Some(name) => Ok(name.clone()),
                None => http::HeaderName::try_from(new),
            };
            let (Some(old), Ok(new)) = (&e.header, new) else {
                continue;
            };
            if *old == new || *old == HOST || new == HOST {
                continue;
            }
            let http::header::Entry::Occupied(found) = h.entry(old) else {
                continue;
            };
            let mut values = found.remove_entry_mult().1;
            let Some(first) = values.next() else {
                continue;
            };
            let rest: smallvec::SmallVec<[HeaderValue; 2]> = values.collect();
            h.insert(new.clone(), first);
            for v in rest {
                h.append(new.clone(), v);
            }
        }
        let mut host = None;
        // `entry` hashes the name once where `contains_key` and `insert` hashed it twice.
        for (e, text, v) in self.header_values(REPLACE) {
            match &e.header {
                Some(name) if *name == HOST => host = Some(text.to_string()),
                Some(name) => {
                    if let http::header::Entry::Occupied(mut found) = h.entry(name) {
                        found.insert(v);
                    }
                }
                None => {}
            }
        }
        for (e, _, v) in self.header_values(ADD) {
            if let Some(name) = e.header.as_ref().filter(|n| **n != HOST) {
                if let http::header::Entry::Vacant(slot) = h.entry(name) {
                    slot.insert(v);
                }
            }
        }
        for (e, _, v) in self.header_values(APPEND) {
            if let Some(name) = e.header.as_ref().filter(|n| **n != HOST) {
                h.append(name.clone(), v);
            }
        }
        host
    }

    /// Edits name/value pairs (a query string, a form body); whether anything changed.
    pub fn pairs(&self, t: Target, p: &mut Vec<(String, String)>) -> bool {
        let has = |p: &[(String, String)], name: &str| p.iter().any(|(k, _)| k == name);
        let mut changed = false;
        for e in self.items(REMOVE, t) {
            let before = p.len();
            p.retain(|(k, _)| *k != e.name);
            changed |= p.len() != before;
        }
        for (e, new) in self.values(RENAME, t) {
            if new != e.name && has(p, &e.name) {
                p.retain(|(k, _)| k != new);
                for (k, _) in p.iter_mut().filter(|(k, _)| *k == e.name) {
                    *k = new.to_string();
                }
                changed = true;
            }
        }
        for (e, v) in self.values(REPLACE, t) {
            if let Some(first) = p.iter().position(|(k, _)| *k == e.name) {
                p[first].1 = v.to_string();
                let mut i = 0;
                p.retain(|(k, _)| {
                    i += 1;
                    i - 1 == first || *k != e.name
                });
                changed = true;
            }
        }
        for (e, v) in self.values(ADD, t) {
            if !has(p, &e.name) {
                p.push((e.name.clone(), v.to_string()));
                changed = true;
            }
        }
        for (e, v) in self.values(APPEND, t) {
            p.push((e.name.clone(), v.to_string()));
            changed = true;
        }
        changed
    }

    /// The query string the upstream gets, or `None` when it stays as the client sent it.
    /// Parameters only added (the usual case) are appended to the client's text, which is
    /// neither decoded nor encoded again.
    pub fn query(&self, current: Option<&str>) -> Option<String> {
        let t = Target::Querystring;
        let raw = current.unwrap_or("");
        if [REMOVE, RENAME, REPLACE]
            .iter()
            .all(|op| self.items(*op, t).is_empty())
        {
            let present =
                |name: &str| form_urlencoded::parse(raw.as_bytes()).any(|(k, _)| k == name);
            let mut added = self
                .values(ADD, t)
                .filter(|(e, _)| !present(&e.name))
                .chain(self.values(APPEND, t))
                .peekable();
            added.peek()?;
            let mut out = String::with_capacity(raw.len() + 32);
            out.push_str(raw);
            for (e, v) in added {
                if !out.is_empty() {
                    out.push('&');
                }
                match (&e.encoded, e.slot) {
                    (Some(pair), None) => out.push_str(pair),
                    _ => {
                        out.extend(form_urlencoded::byte_serialize(e.name.as_bytes()));
                        out.push('=');
                        out.extend(form_urlencoded::byte_serialize(v.as_bytes()));
                    }
                }
            }
            return Some(out);
        }
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(raw.as_bytes())
            .into_owned()
            .collect();
        self.pairs(t, &mut pairs).then(|| encode_pairs(&pairs))
    }

    /// The body as the operations leave it, or `None` when it is unchanged (or does not parse
    /// as its content type says, which Kong passes on as it came).
    pub fn body(&self, kind: BodyKind, content_type: &str, body: &Bytes) -> Option<Bytes> {
        if !self.has(Target::Body) {
            return None;
        }
        match kind {
            BodyKind::Form => {
                let mut pairs = form_urlencoded::parse(body).into_owned().collect();
                self.pairs(Target::Body, &mut pairs)
                    .then(|| encode_pairs(&pairs).into())
            }
            BodyKind::Json => self.json(body),
            BodyKind::Multipart => self.multipart(content_type, body),
        }
    }

    fn json(&self, body: &Bytes) -> Option<Bytes> {
        let mut o = if body.is_empty() {
            Map::new()
        } else {
            match serde_json::from_slice(body) {
                Ok(Value::Object(o)) => o,
                _ => return None,
            }
        };
        let t = Target::Body;
        // Lua's truthiness: a key holding `null` or `false` counts as absent.
        let present = |o: &Map<String, Value>, k: &str| {
            !matches!(
                o.get(k),
                None | Some(Value::Null) | Some(Value::Bool(false))
            )
        };
        for e in self.items(REMOVE, t) {
            o.remove(&e.name);
        }
        for (e, new) in self.values(RENAME, t) {
            if new != e.name {
                if let Some(v) = o.remove(&e.name) {
                    o.insert(new.to_string(), v);
                }
            }
        }
        for (e, v) in self.values(REPLACE, t) {
            if present(&o, &e.name) {
                o.insert(e.name.clone(), Value::from(v));
            }
        }
        for (e, v) in self.values(ADD, t) {
            if !present(&o, &e.name) {
                o.insert(e.name.clone(), Value::from(v));
            }
        }
        for (e, v) in self.values(APPEND, t) {
            let list = match o.remove(&e.name) {
                Some(Value::String(old)) => vec![Value::String(old), Value::from(v)],
                Some(Value::Array(mut a)) => {
                    a.push(Value::from(v));
                    a
                }
                _ => vec![Value::from(v)],
            };
            o.insert(e.name.clone(), Value::Array(list));
        }
        serde_json::to_vec(&Value::Object(o)).ok().map(Bytes::from)
    }

    /// Multipart bodies: rename, remove, replace and add (Kong appends nothing to them).
    fn multipart(&self, content_type: &str, body: &Bytes) -> Option<Bytes> {
        let mut m = Multipart::parse(content_type, body)?;
        let t = Target::Body;
        for (e, new) in self.values(RENAME, t) {
            if new != e.name {
                if let Some(value) = m.get(&e.name).cloned() {
                    m.delete(new);
                    m.add(new, &String::from_utf8_lossy(&value));
                    m.delete(&e.name);
                }
            }
        }
        for e in self.items(REMOVE, t) {
            m.delete(&e.name);
        }
        for (e, v) in self.values(REPLACE, t) {
            if m.delete(&e.name) {
                m.add(&e.name, v);
            }
        }
        for (e, v) in self.values(ADD, t) {
            if m.get(&e.name).is_none() {
                m.add(&e.name, v);
            }
        }
        Some(m.encode())
    }
}

fn encode_pairs(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A form body's fields added to the query string, for a method that sends no body.
pub fn form_to_query(ctx: &mut Context<'_>, body: &[u8]) {
    let mut pairs = ctx.query_params();
    let before = pairs.len();
    pairs.extend(form_urlencoded::parse(body).into_owned());
    if pairs.len() != before {
        ctx.set_query(encode_pairs(&pairs));
    }
}

/// A rendered `replace.uri` as a request path: bytes a path cannot hold as they are
/// (spaces, `?`, `#`, non-ASCII) percent-encoded, so `/requests/tést` goes as
/// `/requests/t%C3%A9st`; a leading `/` added if it has none.
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 1);
    if !path.starts_with('/') {
        out.push('/');
    }
    for b in path.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

//! Events packed back to back into one buffer for their trip from a proxy thread to the
//! batcher.
//!
//! A `RequestEvent` shares its labels (service, route, node) with the snapshot through `Arc`s
//! and owns a few more allocations. Sending it to the batcher's thread as it is makes every
//! label's reference count, and every allocation's free, cross between cores for each request;
//! measured, that cost the proxy thread more than building the event. Packed, many events are
//! one buffer of plain bytes, and the batcher unpacks them into its own strings.
use crate::RequestEvent;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Events' bytes, one after the other.
#[derive(Debug, Default)]
pub struct Packed {
    bytes: Vec<u8>,
    events: usize,
}

/// Marks an absent optional text.
const NONE: u32 = u32::MAX;

impl Packed {
    pub fn push(&mut self, e: &RequestEvent) {
        let w = &mut Writer(&mut self.bytes);
        for n in [
            e.timestamp_us,
            e.total_latency_us,
            e.upstream_latency_us,
            e.gateway_latency_us,
            e.bytes_in,
            e.bytes_out,
        ] {
            w.u64(n);
        }
        w.0.extend_from_slice(&e.status.to_le_bytes());
        w.0.push(
            u8::from(e.rate_limited)
                | u8::from(e.auth_failed) << 1
                | u8::from(e.upstream_failed) << 2,
        );
        w.ip(e.client_ip);
        for s in [&e.request_id, &e.method, &e.host, &e.path, &e.node] {
            w.text(Some(s));
        }
        for s in [
            &e.service,
            &e.route,
            &e.consumer_id,
            &e.consumer,
            &e.credential_id,
            &e.route_path,
            &e.user_agent,
            &e.upstream_addr,
        ] {
            w.text(s.as_ref());
        }
        self.events += 1;
    }

    pub fn len(&self) -> usize {
        self.events
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// The events again, in order. Texts that repeat from event to event come from (and go
    /// into) `labels`.
    pub fn unpack<'a>(&'a self, labels: &'a mut Labels) -> impl Iterator<Item = RequestEvent> + 'a {
        let mut r = Reader {
            bytes: &self.bytes,
            labels,
        };
        std::iter::from_fn(move || r.event())
    }
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u64(&mut self, n: u64) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    fn ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => {
                self.0.push(4);
                self.0.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                self.0.push(6);
                self.0.extend_from_slice(&a.octets());
            }
        }
    }

    fn text(&mut self, s: Option<&Arc<str>>) {
        match s {
            Some(s) => {
                self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
                self.0.extend_from_slice(s.as_bytes());
            }
            None => self.0.extend_from_slice(&NONE.to_le_bytes()),
        }
    }
}

/// The batcher's copies of the texts events repeat (service, route, consumer, node ...), so
/// that unpacking one allocates only its own request id and path. Hashed with foldhash, seeded
/// per process, since clients choose some of these texts (user agent, host).
#[derive(Default)]
pub struct Labels {
    known: HashMap<Box<[u8]>, Arc<str>, foldhash::fast::RandomState>,
    /// Each field's last text, compared first: events in a row mostly repeat their
    /// neighbour's service, route, consumer and node, and a comparison is cheaper than a hash.
    last: Vec<Option<Seen>>,
}

/// A text's bytes as they came, and the text.
type Seen = (Box<[u8]>, Arc<str>);

/// Distinct texts kept at most; beyond it the map starts again (a guard against labels that
/// do not repeat after all, such as user agents under attack).
const LABELS_KEPT: usize = 10_000;

impl Labels {
    /// The text `bytes` hold in the event's field number `field`, `None` if they are not
    /// UTF-8. Looked up by bytes, so that a text seen before is not validated again.
    fn get(&mut self, field: usize, bytes: &[u8]) -> Option<Arc<str>> {
        if let Some(Some((seen, text))) = self.last.get(field) {
            if **seen == *bytes {
                return Some(text.clone());
            }
        }
        let text = self.known(bytes)?;
        if self.last.len() <= field {
            self.last.resize(field + 1, None);
        }
        self.last[field] = Some((bytes.into(), text.clone()));
        Some(text)
    }

    fn known(&mut self, bytes: &[u8]) -> Option<Arc<str>> {
        if let Some(known) = self.known.get(bytes) {
            return Some(known.clone());
        }
        let new: Arc<str> = Arc::from(std::str::from_utf8(bytes).ok()?);
        if self.known.len() >= LABELS_KEPT {
            self.known.clear();
        }
        self.known.insert(bytes.into(), new.clone());
        Some(new)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    labels: &'a mut Labels,
}

impl<'a> Reader<'a> {
    /// The next event; `None` at the end (or at bytes `push` did not write).
    fn event(&mut self) -> Option<RequestEvent> {
        let r = self;
        let [timestamp_us, total, upstream, gateway, bytes_in, bytes_out] =
            [r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?];
        let status = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
        let flags = r.take(1)?[0];
        let client_ip = r.ip()?;
        let [request_id, method, host, path, node] = [
            r.text()??,
            r.label(0)??,
            r.label(1)??,
            r.text()??,
            r.label(2)??,
        ];
        let [service, route, consumer_id, consumer, credential_id, route_path, user_agent, upstream_addr] = [
            r.label(3)?,
            r.label(4)?,
            r.label(5)?,
            r.label(6)?,
            r.label(7)?,
            r.label(8)?,
            r.label(9)?,
            r.label(10)?,
        ];
        Some(RequestEvent {
            timestamp_us,
            request_id,
            service,
            route,
            consumer_id,
            consumer,
            credential_id,
            method,
            host,
            path,
            route_path,
            status,
            total_latency_us: total,
            upstream_latency_us: upstream,
            gateway_latency_us: gateway,
            bytes_in,
            bytes_out,
            client_ip,
            user_agent,
            rate_limited: flags & 1 != 0,
            auth_failed: flags & 2 != 0,
            upstream_failed: flags & 4 != 0,
            upstream_addr,
            node,
        })
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.bytes.split_at_checked(n)?;
        self.bytes = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn ip(&mut self) -> Option<IpAddr> {
        Some(match self.take(1)?[0] {
            4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(self.take(4)?).ok()?)),
            6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(self.take(16)?).ok()?)),
            _ => return None,
        })
    }

    /// An optional text of the event's own (`Some(None)` when absent); `None` when the bytes
    /// are not one.
    fn text(&mut self) -> Option<Option<Arc<str>>> {
        let Some(bytes) = self.optional_bytes()? else {
            return Some(None);
        };
        Some(Some(Arc::from(std::str::from_utf8(bytes).ok()?)))
    }

    /// The same for a text events repeat, from the labels; `field` numbers it among them.
    fn label(&mut self, field: usize) -> Option<Option<Arc<str>>> {
        let Some(bytes) = self.optional_bytes()? else {
            return Some(None);
        };
        Some(Some(self.labels.get(field, bytes)?))
    }

    fn optional_bytes(&mut self) -> Option<Option<&'a [u8]>> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        if len == NONE {
            return Some(None);
        }
        Some(Some(self.take(len as usize)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::event;

    #[test]
    fn events_come_back_as_they_were_packed() {
        let mut a = event(7);
        a.client_ip = "2001:db8::1".parse().unwrap();
        a.credential_id = None;
        a.auth_failed = true;
        a.upstream_failed = true;
        let mut b = event(8);
        b.client_ip = "10.1.2.3".parse().unwrap();
        b.service = None;
        b.user_agent = Some("".into());
        let mut packed = Packed::default();
        for e in [&a, &b, &a] {
            packed.push(e);
        }
        assert_eq!(packed.len(), 3);
        let labels = &mut Labels::default();
        let again: Vec<_> = packed.unpack(labels).collect();
        assert_eq!(again, [a.clone(), b, a]);
        // Repeated texts are shared, not copied per event.
        assert!(Arc::ptr_eq(
            again[0].route.as_ref().unwrap(),
            again[2].route.as_ref().unwrap()
        ));
    }
}

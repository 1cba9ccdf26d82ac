//! Events packed back to back into one buffer: how they travel from a proxy thread to the
//! batcher, wait in a batch, and lie in the spill file.
//!
//! A `RequestEvent` shares its labels (service, route, node) with the snapshot through `Arc`s
//! and owns a few more allocations. Sending it to the batcher's thread as it is makes every
//! label's reference count, and every allocation's free, cross between cores for each request;
//! measured, that cost the proxy thread more than building the event. Packed, many events are
//! one buffer of plain bytes; the batcher appends packs to its batch, and the sinks read the
//! events in place (`EventRef`), without a copy or an allocation per event.
use crate::event::{EventRef, RequestEvent};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Events' bytes, one after the other.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Packed {
    bytes: Vec<u8>,
    events: usize,
}

/// Marks an absent optional text.
const NONE: u32 = u32::MAX;
/// Texts in an event.
const TEXTS: usize = 13;

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
        w.texts([
            Some(&e.request_id),
            Some(&e.method),
            Some(&e.host),
            Some(&e.path),
            Some(&e.node),
            e.service.as_ref(),
            e.route.as_ref(),
            e.consumer_id.as_ref(),
            e.consumer.as_ref(),
            e.credential_id.as_ref(),
            e.route_path.as_ref(),
            e.user_agent.as_ref(),
            e.upstream_addr.as_ref(),
        ]);
        self.events += 1;
    }

    pub fn len(&self) -> usize {
        self.events
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Adds `other`'s events after these.
    pub fn append(&mut self, other: &Packed) {
        self.bytes.extend_from_slice(&other.bytes);
        self.events += other.events;
    }

    /// Forgets the events, keeping the memory.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.events = 0;
    }

    /// The events, in order, read in place.
    pub fn events(&self) -> impl Iterator<Item = EventRef<'_>> + '_ {
        let mut r = Reader(&self.bytes);
        std::iter::from_fn(move || r.event())
    }

    /// The bytes, to be stored (the spill file) and read back with `from_bytes`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Events stored with `as_bytes`; `None` unless the bytes are whole events and nothing else.
    pub fn from_bytes(bytes: Vec<u8>) -> Option<Packed> {
        let mut r = Reader(&bytes);
        let mut events = 0;
        while !r.0.is_empty() {
            r.event()?;
            events += 1;
        }
        Some(Packed { bytes, events })
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

    /// The texts' lengths (`NONE` for an absent one), then their bytes back to back, so that
    /// the reader checks an event's UTF-8 in one call instead of one per text.
    fn texts(&mut self, texts: [Option<&Arc<str>>; TEXTS]) {
        for t in texts {
            let len = t.map_or(NONE, |t| t.len() as u32);
            self.0.extend_from_slice(&len.to_le_bytes());
        }
        for t in texts.into_iter().flatten() {
            self.0.extend_from_slice(t.as_bytes());
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// The next event; `None` at the end (or at bytes `push` did not write).
    fn event(&mut self) -> Option<EventRef<'a>> {
        let r = self;
        let [timestamp_us, total, upstream, gateway, bytes_in, bytes_out] =
            r.numbers::<8, 6>()?.map(u64::from_le_bytes);
        let status = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
        let flags = r.take(1)?[0];
        let client_ip = r.ip()?;
        let [request_id, method, host, path, node, service, route, consumer_id, consumer, credential_id, route_path, user_agent, upstream_addr] =
            r.texts()?;
        let [request_id, method, host, path, node] = [request_id?, method?, host?, path?, node?];
        Some(EventRef {
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
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    /// The next `N` numbers of `W` bytes each, taken in one bounds check.
    fn numbers<const W: usize, const N: usize>(&mut self) -> Option<[[u8; W]; N]> {
        let bytes = self.take(W * N)?;
        let mut numbers = [[0; W]; N];
        for (n, b) in numbers.iter_mut().zip(bytes.chunks_exact(W)) {
            n.copy_from_slice(b);
        }
        Some(numbers)
    }

    fn ip(&mut self) -> Option<IpAddr> {
        Some(match self.take(1)?[0] {
            4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(self.take(4)?).ok()?)),
            6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(self.take(16)?).ok()?)),
            _ => return None,
        })
    }

    /// An event's texts (`None` for an absent one); `None` when the bytes are not texts.
    fn texts(&mut self) -> Option<[Option<&'a str>; TEXTS]> {
        let lens = self.numbers::<4, TEXTS>()?.map(u32::from_le_bytes);
        let total = lens
            .iter()
            .filter(|&&l| l != NONE)
            .map(|&l| l as usize)
            .sum();
        let mut all = std::str::from_utf8(self.take(total)?).ok()?;
        let mut texts = [None; TEXTS];
        for (text, len) in texts.iter_mut().zip(lens) {
            if len != NONE {
                let (t, rest) = all.split_at_checked(len as usize)?;
                (*text, all) = (Some(t), rest);
            }
        }
        Some(texts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::event;

    fn packed(events: &[&RequestEvent]) -> Packed {
        let mut p = Packed::default();
        events.iter().for_each(|e| p.push(e));
        p
    }

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
        let mut p = packed(&[&a, &b]);
        p.append(&packed(&[&a]));
        assert_eq!(p.len(), 3);
        let again: Vec<_> = p.events().map(|e| e.owned()).collect();
        assert_eq!(again, [a.clone(), b, a]);
        p.clear();
        assert!(p.is_empty() && p.events().next().is_none());
    }

    #[test]
    fn stored_bytes_are_read_back_only_when_whole() {
        let p = packed(&[&event(1), &event(2)]);
        assert_eq!(Packed::from_bytes(p.as_bytes().to_vec()), Some(p.clone()));
        let bytes = p.as_bytes();
        assert_eq!(Packed::from_bytes(bytes[..bytes.len() - 1].to_vec()), None);
        let mut extra = bytes.to_vec();
        extra.push(0);
        assert_eq!(Packed::from_bytes(extra), None);
        // A text that is not UTF-8 (the request id's first byte, after the texts' lengths).
        let mut bad = bytes.to_vec();
        let id_at = 6 * 8 + 2 + 1 + 5 + TEXTS * 4;
        bad[id_at] = 0xff;
        assert_eq!(Packed::from_bytes(bad), None);
    }
}

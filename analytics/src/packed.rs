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
/// Marks an absent protocol code.
const NO_CODE: u16 = u16::MAX;
/// The flag of an event followed by its protocol codes (`grpc_status`, `ws_close_code`, two
/// bytes each, after its texts). Events packed before these existed lack the flag and the
/// bytes, so spill files and write-ahead logs from earlier versions read as they were.
const HAS_CODES: u8 = 8;
/// The flag of an event answered from a cache (older events lack it: not hits).
const CACHE_HIT: u8 = 16;
/// Texts in an event.
const TEXTS: usize = 13;
/// Where the head's fields start (see `head`), and its size.
const STATUS: usize = 6 * 8;
const FLAGS: usize = STATUS + 2;
const IP: usize = FLAGS + 1;
const LENGTHS: usize = IP + 17;
const HEAD: usize = LENGTHS + TEXTS * 4;

impl Packed {
    pub fn push(&mut self, e: &RequestEvent) {
        let texts = [
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
        ];
        self.bytes.extend_from_slice(&head(e, &texts));
        for t in texts.into_iter().flatten() {
            self.bytes.extend_from_slice(t.as_bytes());
        }
        if has_codes(e) {
            for code in [e.grpc_status, e.ws_close_code] {
                self.bytes
                    .extend_from_slice(&code.unwrap_or(NO_CODE).to_le_bytes());
            }
        }
        self.events += 1;
    }

    pub fn with_capacity(bytes: usize) -> Packed {
        Packed {
            bytes: Vec::with_capacity(bytes),
            events: 0,
        }
    }

    pub fn byte_len(&self) -> usize {
        self.bytes.len()
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

impl Packed {
    /// The whole events at the start of `bytes`: a write cut short by a crash leaves part of
    /// an event at the end, which is dropped.
    pub fn whole_events(mut bytes: Vec<u8>) -> Packed {
        let (mut events, mut good) = (0, 0);
        let mut r = Reader(&bytes);
        while r.event().is_some() {
            events += 1;
            good = bytes.len() - r.0.len();
        }
        bytes.truncate(good);
        Packed { bytes, events }
    }
}

/// An event's fixed-size part, written at fixed offsets in one go (field by field, growing
/// the buffer each time, recording cost the proxy thread 846 instructions an event under
/// callgrind instead of 651): the numbers, the status, the flags, the client address (tag 4
/// or 6, then 16 bytes) and the texts' lengths (`NONE` for an absent one). The texts' bytes
/// follow it back to back, so that the reader checks an event's UTF-8 in one call instead of
/// one per text.
fn head(e: &RequestEvent, texts: &[Option<&Arc<str>>; TEXTS]) -> [u8; HEAD] {
    let mut h = [0; HEAD];
    let numbers = [
        e.timestamp_us,
        e.total_latency_us,
        e.upstream_latency_us,
        e.gateway_latency_us,
        e.bytes_in,
        e.bytes_out,
    ];
    for (i, n) in numbers.into_iter().enumerate() {
        h[i * 8..i * 8 + 8].copy_from_slice(&n.to_le_bytes());
    }
    h[STATUS..STATUS + 2].copy_from_slice(&e.status.to_le_bytes());
    h[FLAGS] = u8::from(e.rate_limited)
        | u8::from(e.auth_failed) << 1
        | u8::from(e.upstream_failed) << 2
        | if has_codes(e) { HAS_CODES } else { 0 }
        | if e.cache_hit { CACHE_HIT } else { 0 };
    match e.client_ip {
        IpAddr::V4(a) => {
            h[IP] = 4;
            h[IP + 1..IP + 5].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            h[IP] = 6;
            h[IP + 1..IP + 17].copy_from_slice(&a.octets());
        }
    }
    for (i, t) in texts.iter().enumerate() {
        let len = t.map_or(NONE, |t| t.len() as u32);
        h[LENGTHS + i * 4..LENGTHS + i * 4 + 4].copy_from_slice(&len.to_le_bytes());
    }
    h
}

fn has_codes(e: &RequestEvent) -> bool {
    e.grpc_status.is_some() || e.ws_close_code.is_some()
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// The next event; `None` at the end (or at bytes `push` did not write).
    fn event(&mut self) -> Option<EventRef<'a>> {
        let h: &[u8; HEAD] = self.take(HEAD)?.try_into().ok()?;
        let [timestamp_us, total, upstream, gateway, bytes_in, bytes_out] =
            std::array::from_fn(|i| u64::from_le_bytes(bytes(h, i * 8)));
        let client_ip = match h[IP] {
            4 => IpAddr::V4(Ipv4Addr::from(bytes::<4>(h, IP + 1))),
            6 => IpAddr::V6(Ipv6Addr::from(bytes::<16>(h, IP + 1))),
            _ => return None,
        };
        let lengths = std::array::from_fn(|i| u32::from_le_bytes(bytes(h, LENGTHS + i * 4)));
        let [request_id, method, host, path, node, service, route, consumer_id, consumer, credential_id, route_path, user_agent, upstream_addr] =
            self.texts(lengths)?;
        let [request_id, method, host, path, node] = [request_id?, method?, host?, path?, node?];
        let flags = h[FLAGS];
        let [grpc_status, ws_close_code] = match flags & HAS_CODES {
            0 => [None; 2],
            _ => {
                let codes = self.take(4)?;
                let code = |at: usize| {
                    Some(u16::from_le_bytes([codes[at], codes[at + 1]])).filter(|&c| c != NO_CODE)
                };
                [code(0), code(2)]
            }
        };
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
            status: u16::from_le_bytes(bytes(h, STATUS)),
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
            grpc_status,
            ws_close_code,
            cache_hit: flags & CACHE_HIT != 0,
            node,
        })
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    /// The texts of `lengths` (`None` for an absent one); `None` when the bytes are not texts.
    fn texts(&mut self, lengths: [u32; TEXTS]) -> Option<[Option<&'a str>; TEXTS]> {
        let total = lengths
            .iter()
            .filter(|&&l| l != NONE)
            .map(|&l| l as usize)
            .sum();
        let mut all = std::str::from_utf8(self.take(total)?).ok()?;
        let mut texts = [None; TEXTS];
        for (text, len) in texts.iter_mut().zip(lengths) {
            if len != NONE {
                let (t, rest) = all.split_at_checked(len as usize)?;
                (*text, all) = (Some(t), rest);
            }
        }
        Some(texts)
    }
}

/// `N` bytes of the head from `at`.
fn bytes<const N: usize>(h: &[u8; HEAD], at: usize) -> [u8; N] {
    let mut b = [0; N];
    b.copy_from_slice(&h[at..at + N]);
    b
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
        b.ws_close_code = Some(1000);
        let mut c = event(9);
        c.grpc_status = Some(0);
        c.cache_hit = true;
        let mut p = packed(&[&a, &b, &c]);
        p.append(&packed(&[&a]));
        assert_eq!(p.len(), 4);
        let again: Vec<_> = p.events().map(|e| e.owned()).collect();
        assert_eq!(again, [a.clone(), b, c, a]);
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
        let id_at = HEAD;
        bad[id_at] = 0xff;
        assert_eq!(Packed::from_bytes(bad), None);
    }
}

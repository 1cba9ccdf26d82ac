//! A batch's events as blocks of ClickHouse's Native format: column after column, each named
//! and typed, so the server stores them without parsing rows. Debian's 18.16 server spent
//! 7,006 instructions per event on the crate's row-by-row RowBinary inserts and spends 4,254
//! on these blocks (callgrind of the server while a gateway inserted 40,000 proxied requests'
//! events in batches of 20,000). The gateway writes the blocks in one pass over the packed
//! events, at about the cost of the RowBinary rows.
use crate::event::EventRef;
use crate::ip_text::IpText;
use bytes::Bytes;

/// The events table's columns in the order `Block::add` fills them, with their types.
pub const COLUMNS: [(&str, &str); 30] = [
    ("date", "Date"),
    ("timestamp", "DateTime"),
    ("timestamp_us", "UInt32"),
    ("request_id", "String"),
    ("service", "String"),
    ("route", "String"),
    ("consumer_id", "String"),
    ("consumer", "String"),
    ("credential_id", "String"),
    ("method", "String"),
    ("host", "String"),
    ("path", "String"),
    ("route_path", "String"),
    ("status", "UInt16"),
    ("latency_us", "UInt32"),
    ("upstream_latency_us", "UInt32"),
    ("gateway_latency_us", "UInt32"),
    ("bytes_in", "UInt64"),
    ("bytes_out", "UInt64"),
    ("client_ip", "String"),
    ("user_agent", "String"),
    ("rate_limited", "UInt8"),
    ("auth_failed", "UInt8"),
    ("upstream_failed", "UInt8"),
    ("upstream_addr", "String"),
    ("grpc_status", "Int32"),
    ("ws_close_code", "Int32"),
    ("cache_hit", "UInt8"),
    ("node", "String"),
    ("batch_id", "String"),
];

/// Events per block. A batch goes as several blocks in one `INSERT`, which the server joins
/// into one part (`ClickHouse::write`). Small blocks reuse the same memory block after block:
/// a 50,000-event batch as one block took about 18 MB of fresh pages each time (25 page
/// faults per 1,000 requests, against 1.5 with these blocks), and the kernel zeroing them was
/// about 1 % of the gateway's CPU (perf, `clear_page_erms`). Joining the blocks costs the server about 2 %
/// more instructions per event than one block per batch (callgrind of 18.16, 20,000 events
/// as one block or as five), 3-4 % with blocks of 1,000.
pub const BLOCK_ROWS: usize = 4096;

/// The columns' values, filled event by event.
#[derive(Default)]
pub struct Block {
    columns: [Vec<u8>; COLUMNS.len()],
    rows: usize,
}

/// Days since 1970-01-01, ClickHouse's `Date`.
pub fn day(timestamp_us: u64) -> u16 {
    (timestamp_us / 1_000_000 / 86_400) as u16
}

impl Block {
    /// Appends one event's values (and `batch_id` to the batch column).
    pub fn add(&mut self, e: &EventRef<'_>, batch_id: &str) {
        let [date, timestamp, timestamp_us, request_id, service, route, consumer_id, consumer, credential_id, method, host, path, route_path, status, latency_us, upstream_latency_us, gateway_latency_us, bytes_in, bytes_out, client_ip, user_agent, rate_limited, auth_failed, upstream_failed, upstream_addr, grpc_status, ws_close_code, cache_hit, node, batch] =
            &mut self.columns;
        let micros = |v: u64| u32::try_from(v).unwrap_or(u32::MAX).to_le_bytes();
        date.extend_from_slice(&day(e.timestamp_us).to_le_bytes());
        timestamp.extend_from_slice(&((e.timestamp_us / 1_000_000) as u32).to_le_bytes());
        timestamp_us.extend_from_slice(&((e.timestamp_us % 1_000_000) as u32).to_le_bytes());
        text(request_id, e.request_id);
        text(service, e.service.unwrap_or(""));
        text(route, e.route.unwrap_or(""));
        text(consumer_id, e.consumer_id.unwrap_or(""));
        text(consumer, e.consumer.unwrap_or(""));
        text(credential_id, e.credential_id.unwrap_or(""));
        text(method, e.method);
        text(host, e.host);
        text(path, e.path);
        text(route_path, e.route_path.unwrap_or(""));
        status.extend_from_slice(&e.status.to_le_bytes());
        latency_us.extend_from_slice(&micros(e.total_latency_us));
        upstream_latency_us.extend_from_slice(&micros(e.upstream_latency_us));
        gateway_latency_us.extend_from_slice(&micros(e.gateway_latency_us));
        bytes_in.extend_from_slice(&e.bytes_in.to_le_bytes());
        bytes_out.extend_from_slice(&e.bytes_out.to_le_bytes());
        text(client_ip, IpText::new(e.client_ip).as_bytes());
        text(user_agent, e.user_agent.unwrap_or(""));
        rate_limited.push(u8::from(e.rate_limited));
        auth_failed.push(u8::from(e.auth_failed));
        upstream_failed.push(u8::from(e.upstream_failed));
        text(upstream_addr, e.upstream_addr.unwrap_or(""));
        let code = |c: Option<u16>| c.map_or(-1, i32::from).to_le_bytes();
        grpc_status.extend_from_slice(&code(e.grpc_status));
        ws_close_code.extend_from_slice(&code(e.ws_close_code));
        cache_hit.push(u8::from(e.cache_hit));
        text(node, e.node);
        text(batch, batch_id);
        self.rows += 1;
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The block as it goes on the wire: the column and row counts, then each column's name,
    /// type and values (one chunk each, so the values are not copied again). The block is
    /// left empty, each column with room for as many bytes as it just held.
    pub fn take_chunks(&mut self) -> Vec<Bytes> {
        let mut head = Vec::new();
        varuint(&mut head, COLUMNS.len());
        varuint(&mut head, std::mem::take(&mut self.rows));
        let mut chunks = Vec::with_capacity(2 * COLUMNS.len());
        for ((name, kind), values) in COLUMNS.iter().zip(&mut self.columns) {
            text(&mut head, name);
            text(&mut head, kind);
            chunks.push(Bytes::from(std::mem::take(&mut head)));
            let room = Vec::with_capacity(values.len());
            chunks.push(Bytes::from(std::mem::replace(values, room)));
        }
        chunks
    }
}

/// A `String` value: its length as a variable-length integer, then its bytes.
fn text(out: &mut Vec<u8>, s: impl AsRef<[u8]>) {
    let s = s.as_ref();
    varuint(out, s.len());
    out.extend_from_slice(s);
}

/// LEB128, seven bits a byte, low bits first.
fn varuint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::event;

    #[test]
    fn columns_are_the_events_table_in_order() {
        let ddl = include_str!("../../../migrations/clickhouse/001_events.sql");
        let table = ddl.split("CREATE TABLE").nth(1).unwrap();
        let body = &table[table.find('(').unwrap() + 1..table.find(") ENGINE").unwrap()];
        let declared: Vec<(&str, &str)> = body
            .lines()
            .map(|l| l.trim().trim_end_matches(','))
            .filter(|l| !l.is_empty() && !l.starts_with("--"))
            .map(|l| l.split_once(' ').unwrap())
            .collect();
        assert_eq!(declared, COLUMNS);
    }

    #[test]
    fn a_block_holds_each_column_named_typed_and_filled() {
        let mut block = Block::default();
        let long_path = format!("/{}", "a".repeat(200));
        let mut e = event(1);
        e.path = long_path.as_str().into();
        e.consumer = None;
        let packed = {
            let mut p = crate::packed::Packed::default();
            p.push(&e);
            p.push(&event(2));
            p
        };
        packed.events().for_each(|e| block.add(&e, "b1"));
        assert_eq!(block.rows(), 2);
        let chunks = block.take_chunks();
        assert_eq!(chunks.len(), 2 * COLUMNS.len());
        // Head: 30 columns, 2 rows, then the first column's name and type.
        assert_eq!(&chunks[0][..], b"\x1e\x02\x04date\x04Date");
        let day = (event(1).timestamp_us / 86_400_000_000) as u16;
        assert_eq!(
            &chunks[1][..],
            [day.to_le_bytes(), day.to_le_bytes()].concat()
        );
        // `path`: a 201-byte text takes a two-byte length.
        let path = &chunks[2 * 11 + 1];
        assert_eq!(&path[..3], [0xc9, 0x01, b'/']);
        assert_eq!(path.len(), 2 + 201 + 1 + event(2).path.len());
        // `consumer`: empty for the event without one.
        assert_eq!(&chunks[2 * 7 + 1][..], b"\x00\x09slow_user");
        // `grpc_status`: -1 (none) as Int32 for both.
        assert_eq!(&chunks[2 * 25 + 1][..], [0xff; 8]);
        assert_eq!(&chunks[2 * 29 + 1][..], b"\x02b1\x02b1");
        // Emptied for the next block, which starts with its own head.
        assert_eq!(block.rows(), 0);
        block.add(&packed.events().next().unwrap(), "b2");
        let next = block.take_chunks();
        assert_eq!(&next[0][..], b"\x1e\x01\x04date\x04Date");
        assert_eq!(&next[2 * 29 + 1][..], b"\x02b2");
    }
}

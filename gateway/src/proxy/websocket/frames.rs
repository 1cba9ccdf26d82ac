//! Reads the WebSocket frames (RFC 6455 §5.2) passing through a tunnel, without changing or
//! holding a byte of them, to learn the close code: the relay copies bytes as they come and
//! shows them to a `CloseWatch` on the way, which keeps only the frame header it is in.
//!
//! Frames are not reassembled or checked: the endpoints do that. A malformed stream just
//! leaves the close code unknown.

/// RFC 6455 §7.4.1: a Close frame without a status code.
pub const NO_STATUS: u16 = 1005;
/// RFC 6455 §7.4.1: the connection ended without a Close frame.
pub const ABNORMAL: u16 = 1006;

const OPCODE_CLOSE: u8 = 0x8;
/// Base header, 8 bytes of extended length, 4 of mask.
const MAX_HEADER: usize = 14;

/// One direction's frame boundaries, fed the bytes as they pass.
#[derive(Default)]
pub struct CloseWatch {
    header: [u8; MAX_HEADER],
    have: usize,
    /// Payload bytes of the current frame still to pass.
    payload_left: u64,
    /// While inside a Close frame's payload: its mask, bytes of it seen, the code so far.
    close: Option<CloseFrame>,
    /// The first Close frame's code.
    code: Option<u16>,
}

#[derive(Clone, Copy)]
struct CloseFrame {
    mask: Option<[u8; 4]>,
    seen: usize,
    code: [u8; 2],
}

impl CloseWatch {
    /// The status code of the first Close frame that passed, if one did.
    pub fn code(&self) -> Option<u16> {
        self.code
    }

    /// Shows the watch the next bytes of the stream.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && self.code.is_none() {
            if self.payload_left > 0 {
                let n = (self.payload_left.min(bytes.len() as u64)) as usize;
                self.close_payload(&bytes[..n]);
                self.payload_left -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let take = (self.header_len().unwrap_or(2) - self.have).min(bytes.len());
            self.header[self.have..self.have + take].copy_from_slice(&bytes[..take]);
            self.have += take;
            bytes = &bytes[take..];
            if let Some(len) = self.header_len().filter(|&len| len == self.have) {
                self.start_frame(len);
            }
        }
    }

    /// The whole header's length, once its first two bytes are known.
    fn header_len(&self) -> Option<usize> {
        if self.have < 2 {
            return None;
        }
        let extended = match self.header[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
        Some(2 + extended + mask)
    }

    fn start_frame(&mut self, len: usize) {
        let h = &self.header[..len];
        let (payload, rest) = match h[1] & 0x7f {
            126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), &h[4..]),
            127 => (
                u64::from_be_bytes(h[2..10].try_into().expect("8 bytes")),
                &h[10..],
            ),
            n => (u64::from(n), &h[2..]),
        };
        let mask = (h[1] & 0x80 != 0).then(|| [rest[0], rest[1], rest[2], rest[3]]);
        self.have = 0;
        self.payload_left = payload;
        if h[0] & 0x0f == OPCODE_CLOSE {
            if payload < 2 {
                self.code = Some(NO_STATUS);
                return;
            }
            self.close = Some(CloseFrame {
                mask,
                seen: 0,
                code: [0; 2],
            });
        }
    }

    fn close_payload(&mut self, bytes: &[u8]) {
        let Some(frame) = self.close.as_mut() else {
            return;
        };
        for &b in bytes.iter().take(2 - frame.seen) {
            let key = frame.mask.map_or(0, |m| m[frame.seen % 4]);
            frame.code[frame.seen] = b ^ key;
            frame.seen += 1;
        }
        if frame.seen == 2 {
            self.code = Some(u16::from_be_bytes(frame.code));
            self.close = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as RFC 6455 §5.2 lays it out, masked with `mask` when given.
    fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![0x80 | opcode];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(m | n as u8),
            n if n <= 0xffff => {
                out.push(m | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(m | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    fn close(code: u16, reason: &str) -> Vec<u8> {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason.as_bytes());
        p
    }

    #[test]
    fn the_close_code_is_read_after_data_frames_of_every_length_form() {
        let mut stream = frame(0x1, b"hello", None);
        stream.extend(frame(0x2, &[7; 300], None));
        stream.extend(frame(0x2, &vec![1; 70_000], None));
        stream.extend(frame(OPCODE_CLOSE, &close(1000, "bye"), None));
        let mut w = CloseWatch::default();
        w.feed(&stream);
        assert_eq!(w.code(), Some(1000));
    }

    #[test]
    fn a_masked_close_fed_one_byte_at_a_time_is_read() {
        let key = Some([0x12, 0x34, 0x56, 0x78]);
        let mut stream = frame(0x1, b"ping me", key);
        stream.extend(frame(OPCODE_CLOSE, &close(4001, "custom"), key));
        let mut w = CloseWatch::default();
        for b in &stream {
            w.feed(std::slice::from_ref(b));
        }
        assert_eq!(w.code(), Some(4001));
    }

    #[test]
    fn a_close_without_a_code_is_no_status_and_none_seen_is_none() {
        let mut w = CloseWatch::default();
        w.feed(&frame(0x1, b"x", None));
        assert_eq!(w.code(), None);
        w.feed(&frame(OPCODE_CLOSE, b"", None));
        assert_eq!(w.code(), Some(NO_STATUS));
    }

    #[test]
    fn a_close_code_inside_a_data_payload_is_not_taken_for_a_frame() {
        // A text frame whose payload looks like a Close frame header.
        let mut w = CloseWatch::default();
        w.feed(&frame(
            0x1,
            &frame(OPCODE_CLOSE, &close(1001, ""), None),
            None,
        ));
        assert_eq!(w.code(), None);
    }
}

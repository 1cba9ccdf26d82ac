//! Client addresses as text, made on the stack: the ClickHouse sink writes one for every event,
//! and `IpAddr::to_string` (an allocation and a trip through `fmt` per octet) was a quarter of
//! that sink's own cost per event.
use std::io::Write;
use std::net::IpAddr;

/// An address's text, as `IpAddr`'s `Display` writes it.
pub struct IpText {
    /// Long enough for any IPv6 text (`ffff:…:255.255.255.255` is 45 bytes).
    bytes: [u8; 45],
    len: usize,
}

impl IpText {
    pub fn new(ip: IpAddr) -> IpText {
        let mut t = IpText {
            bytes: [0; 45],
            len: 0,
        };
        match ip {
            IpAddr::V4(a) => {
                for (i, octet) in a.octets().into_iter().enumerate() {
                    if i > 0 {
                        t.push(b'.');
                    }
                    t.decimal(octet);
                }
            }
            IpAddr::V6(a) => {
                let mut rest = &mut t.bytes[..];
                // Cannot fail: the buffer fits the longest text.
                let _ = write!(rest, "{a}");
                t.len = 45 - rest.len();
            }
        }
        t
    }

    fn push(&mut self, b: u8) {
        self.bytes[self.len] = b;
        self.len += 1;
    }

    fn decimal(&mut self, n: u8) {
        if n >= 100 {
            self.push(b'0' + n / 100);
        }
        if n >= 10 {
            self.push(b'0' + n / 10 % 10);
        }
        self.push(b'0' + n % 10);
    }

    /// The text's bytes: ASCII digits, dots, colons and hex letters.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_what_display_writes() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.199.255",
            "255.255.255.255",
            "198.51.100.7",
            "::1",
            "2001:db8::8a2e:370:7334",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(IpText::new(ip).as_bytes(), ip.to_string().as_bytes());
        }
    }
}

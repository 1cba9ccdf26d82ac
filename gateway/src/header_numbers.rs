//! Numbers as header values. Responses carry several (latencies, rate-limit counts and
//! resets), and formatting each into new memory showed in the proxy's profile. Those under a
//! thousand are slices of one static text made at compile time: no allocation, and cloning or
//! dropping them touches no reference count. Larger ones take one allocation (`HeaderValue`'s
//! own `From<u64>` takes two).
use bytes::Bytes;
use http::HeaderValue;

/// The numbers 0 to 999 written one after the other: "0123456789101112…999".
static SMALL: [u8; 2890] = small_numbers();

const fn digits(n: usize) -> usize {
    if n < 10 {
        1
    } else if n < 100 {
        2
    } else {
        3
    }
}

/// Where `n` (under a thousand) starts in `SMALL`.
const fn offset(n: usize) -> usize {
    if n < 10 {
        n
    } else if n < 100 {
        10 + (n - 10) * 2
    } else {
        190 + (n - 100) * 3
    }
}

const fn small_numbers() -> [u8; 2890] {
    let mut out = [0u8; 2890];
    let mut n = 0;
    while n < 1000 {
        let (at, mut i, mut rest) = (offset(n), digits(n), n);
        while i > 0 {
            i -= 1;
            out[at + i] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        n += 1;
    }
    out
}

/// `n` in decimal, as a header value.
pub fn value(n: u64) -> HeaderValue {
    let text = match usize::try_from(n) {
        Ok(n) if n < 1000 => Bytes::from_static(&SMALL[offset(n)..offset(n) + digits(n)]),
        _ => Bytes::copy_from_slice(itoa::Buffer::new().format(n).as_bytes()),
    };
    HeaderValue::from_maybe_shared(text).expect("decimal digits are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_the_numbers() {
        for n in (0..1100).chain([9_999, 1_000_000_000, u64::MAX]) {
            assert_eq!(value(n), n.to_string().as_str(), "{n}");
        }
    }
}

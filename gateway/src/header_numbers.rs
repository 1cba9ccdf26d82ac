//! Numbers as header values. Responses carry several (latencies, rate-limit counts and
//! resets), and formatting each into a new allocation showed in the proxy's profile: those
//! under a thousand come from a table made once, as clones of shared bytes.
use http::HeaderValue;
use std::sync::LazyLock;

static UNDER_A_THOUSAND: LazyLock<Vec<HeaderValue>> =
    LazyLock::new(|| (0..1000u64).map(HeaderValue::from).collect());

/// `n` in decimal, as a header value.
pub fn value(n: u64) -> HeaderValue {
    match UNDER_A_THOUSAND.get(n as usize) {
        Some(v) => v.clone(),
        None => HeaderValue::from(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_the_numbers() {
        assert_eq!(value(0), "0");
        assert_eq!(value(999), "999");
        assert_eq!(value(1000), "1000");
        assert_eq!(value(u64::MAX), "18446744073709551615");
    }
}

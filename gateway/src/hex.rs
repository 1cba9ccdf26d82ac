//! Bytes as lowercase hexadecimal text (cache keys, trace and span ids), written from a
//! table: the per-byte `format!` it replaces allocated once per byte.

/// `bytes` in lowercase hex, two digits a byte.
pub fn encode(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    encode_into(bytes, &mut text);
    text
}

/// Appends `bytes` in lowercase hex to `text`.
pub fn encode_into(bytes: &[u8], text: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        text.push(DIGITS[usize::from(b >> 4)] as char);
        text.push(DIGITS[usize::from(b & 15)] as char);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_become_two_lowercase_digits_each() {
        assert_eq!(super::encode(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
        assert_eq!(super::encode(&[]), "");
    }
}

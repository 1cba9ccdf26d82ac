//! `multipart/form-data` request bodies (RFC 7578) as request-transformer edits them: parts
//! by name, read, removed, set to a plain value, and written back with the same boundary.
//! Parts nobody touched keep their headers and bytes (files stay files).
use bytes::{BufMut, Bytes, BytesMut};

/// A parsed body.
pub struct Multipart {
    boundary: String,
    parts: Vec<Part>,
}

struct Part {
    /// The `name` of its `Content-Disposition`.
    name: Option<String>,
    /// Its header lines as they came, without the blank line.
    head: Bytes,
    value: Bytes,
}

impl Multipart {
    /// Parses `body` with the boundary of `content_type`; `None` when it has none or the body
    /// is not made of parts with that boundary. An empty body has no parts.
    pub fn parse(content_type: &str, body: &Bytes) -> Option<Multipart> {
        let boundary = boundary(content_type)?;
        let mut parts = Vec::new();
        if !body.is_empty() {
            let delimiter = format!("--{boundary}");
            let mut at = find(body, delimiter.as_bytes(), 0)? + delimiter.len();
            while !body[at..].starts_with(b"--") {
                let start = at + crlf(&body[at..])?;
                let next = find(body, format!("\r\n{delimiter}").as_bytes(), start)?;
                parts.push(Part::parse(body.slice(start..next))?);
                at = next + 2 + delimiter.len();
            }
        }
        Some(Multipart { boundary, parts })
    }

    /// The value of the first part named `name`.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.parts
            .iter()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| &p.value)
    }

    /// Removes every part named `name`; whether there was one.
    pub fn delete(&mut self, name: &str) -> bool {
        let before = self.parts.len();
        self.parts.retain(|p| p.name.as_deref() != Some(name));
        self.parts.len() != before
    }

    /// Adds a plain field `name` at the end.
    pub fn add(&mut self, name: &str, value: &str) {
        let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
        let head = format!("Content-Disposition: form-data; name=\"{escaped}\"");
        self.parts.push(Part {
            name: Some(name.to_string()),
            head: head.into(),
            value: Bytes::copy_from_slice(value.as_bytes()),
        });
    }

    /// The body, written with the boundary it came with.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        for p in &self.parts {
            out.put_slice(b"--");
            out.put_slice(self.boundary.as_bytes());
            out.put_slice(b"\r\n");
            out.put_slice(&p.head);
            out.put_slice(b"\r\n\r\n");
            out.put_slice(&p.value);
            out.put_slice(b"\r\n");
        }
        out.put_slice(b"--");
        out.put_slice(self.boundary.as_bytes());
        out.put_slice(b"--\r\n");
        out.freeze()
    }
}

impl Part {
    fn parse(raw: Bytes) -> Option<Part> {
        // A part without headers starts with the blank line itself.
        let (head, value) = if raw.starts_with(b"\r\n") {
            (Bytes::new(), raw.slice(2..))
        } else {
            let end = find(&raw, b"\r\n\r\n", 0)?;
            (raw.slice(..end), raw.slice(end + 4..))
        };
        let name = std::str::from_utf8(&head).ok().and_then(disposition_name);
        Some(Part { name, head, value })
    }
}

/// The `boundary` parameter of a `multipart/form-data` content type.
fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim().trim_matches('"');
        (!value.is_empty() && value.len() <= 70).then(|| value.to_string())
    })
}

/// The `name` of a part's `Content-Disposition: form-data; name="..."`.
fn disposition_name(head: &str) -> Option<String> {
    let line = head.split("\r\n").find(|l| {
        l.split(':')
            .next()
            .is_some_and(|n| n.trim().eq_ignore_ascii_case("content-disposition"))
    })?;
    let params = line.split_once(':')?.1;
    params.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("name") {
            return None;
        }
        let value = value.trim();
        let unquoted = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .map_or(value.to_string(), |v| {
                v.replace("\\\"", "\"").replace("\\\\", "\\")
            });
        Some(unquoted)
    })
}

/// The length of the line break at the start of `rest` (after a delimiter's padding).
fn crlf(rest: &[u8]) -> Option<usize> {
    let line_end = find(rest, b"\r\n", 0)?;
    rest[..line_end]
        .iter()
        .all(|b| *b == b' ' || *b == b'\t')
        .then_some(line_end + 2)
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "multipart/form-data; boundary=XyZ";

    fn body() -> Bytes {
        Bytes::from_static(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n\
              --XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.txt\"\r\n\
              Content-Type: text/plain\r\n\r\nline\r\nline2\r\n--XyZ--\r\n",
        )
    }

    #[test]
    fn parts_are_read_changed_and_written_back() {
        let mut m = Multipart::parse(CT, &body()).unwrap();
        assert_eq!(m.get("a").unwrap(), "1");
        assert_eq!(m.get("f").unwrap(), "line\r\nline2");
        assert!(m.delete("a"));
        assert!(!m.delete("a"));
        m.add("b", "2");
        let again = Multipart::parse(CT, &m.encode()).unwrap();
        assert_eq!(again.get("b").unwrap(), "2");
        assert_eq!(again.get("f").unwrap(), "line\r\nline2");
        assert!(again.get("a").is_none());
        assert!(String::from_utf8_lossy(&m.encode()).contains("filename=\"x.txt\""));
    }

    #[test]
    fn bodies_without_the_boundary_are_not_parsed() {
        assert!(Multipart::parse("multipart/form-data", &body()).is_none());
        let other = "multipart/form-data; boundary=other";
        assert!(Multipart::parse(other, &body()).is_none());
        let truncated = body().slice(..40);
        assert!(Multipart::parse(CT, &truncated).is_none());
        assert!(Multipart::parse(CT, &Bytes::new())
            .unwrap()
            .get("a")
            .is_none());
    }
}

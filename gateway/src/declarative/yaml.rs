//! YAML (and JSON, which YAML reads too) into JSON values, remembering the line each value
//! starts on, so a validation error can point at the line that caused it.
//!
//! Every YAML document from outside (declarative files, `tollgate config`, OpenAPI uploads
//! through the admin API and the console) is read here, so the bounds are here too: the
//! document's size, its nesting depth, and the number of values it makes once aliases are
//! expanded. A few hundred bytes of nested aliases (`a: &a [x, x]`, `b: &b [*a, *a]`, ...)
//! otherwise expand to gigabytes; past the bound the document is refused before any copy.
use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A parsed document and where each of its values starts (`services[0].routes[1].paths` → 12).
pub struct Located {
    pub value: Value,
    pub lines: HashMap<String, usize>,
}

impl Located {
    /// The line of `path`, or of its nearest enclosing value.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(l) = self.lines.get(p) {
                return Some(*l);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

/// A syntax error, with its line.
#[derive(Debug)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

/// The largest document read (a 10,000-route declarative file is about 1.5 MiB).
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024 * 1024;
/// The most values a document may make, aliases expanded (each scalar, sequence and mapping
/// counts one).
pub const MAX_VALUES: usize = 4_000_000;
/// The deepest nesting of sequences and mappings (serde_json's own limit for JSON).
pub const MAX_DEPTH: usize = 128;

pub fn parse(text: &str) -> Result<Located, SyntaxError> {
    let b = build(text, false)?;
    Ok(Located {
        value: b.documents.into_iter().next().unwrap_or(Value::Null),
        lines: b.lines,
    })
}

/// Every document of a stream (`---` between them), as Kubernetes manifests come; empty
/// documents are left out. The bounds apply to the stream as a whole.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, SyntaxError> {
    let b = build(text, true)?;
    Ok(b.documents)
}

fn build(text: &str, multi: bool) -> Result<Builder, SyntaxError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(SyntaxError {
            line: 1,
            message: format!(
                "the document is {} bytes, more than the {MAX_DOCUMENT_BYTES} allowed",
                text.len()
            ),
        });
    }
    let mut b = Builder::default();
    Parser::new_from_str(text)
        .load(&mut b, multi)
        .map_err(|e| SyntaxError {
            line: e.marker().line(),
            message: e.info().to_string(),
        })?;
    if let Some(message) = b.error {
        return Err(SyntaxError {
            line: b.error_line,
            message,
        });
    }
    Ok(b)
}

enum Frame {
    /// The items so far, the anchor, and the value count when the sequence started.
    Seq(Vec<Value>, usize, usize),
    /// The mapping so far, the key waiting for its value (and the key's line), the anchor,
    /// and the value count when the mapping started.
    Map(Map<String, Value>, Option<(String, usize)>, usize, usize),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    path: Vec<String>,
    root: Option<Value>,
    lines: HashMap<String, usize>,
    /// Anchored values and how many values each one makes.
    anchors: HashMap<usize, (Value, usize)>,
    /// Values made so far, aliases expanded (see `MAX_VALUES`).
    values: usize,
    error: Option<String>,
    error_line: usize,
    /// The documents finished so far (a stream's, see `parse_documents`).
    documents: Vec<Value>,
}

impl Builder {
    fn current_path(&self) -> String {
        let mut out = String::new();
        for seg in &self.path {
            if seg.starts_with('[') || out.is_empty() {
                out.push_str(seg);
            } else {
                out.push('.');
                out.push_str(seg);
            }
        }
        out
    }

    /// Where the next value goes: pushes its path segment and records its line (a mapping
    /// entry's is its key's line, where an error about it should point even when the value is
    /// a nested block starting below). Returns false when the next scalar is a mapping key.
    fn enter_value(&mut self, mut line: usize) -> bool {
        match self.stack.last() {
            Some(Frame::Map(_, None, _, _)) => return false,
            Some(Frame::Map(_, Some((k, key_line)), _, _)) => {
                line = *key_line;
                self.path.push(k.clone());
            }
            Some(Frame::Seq(items, _, _)) => self.path.push(format!("[{}]", items.len())),
            None => {}
        }
        self.lines.insert(self.current_path(), line);
        true
    }

    /// Counts `n` more values; false (and the document refused) past `MAX_VALUES`.
    fn count(&mut self, n: usize, line: usize) -> bool {
        self.values = self.values.saturating_add(n);
        if self.values > MAX_VALUES {
            self.fail(
                line,
                format!("the document makes more than {MAX_VALUES} values once its aliases are expanded"),
            );
        }
        self.error.is_none()
    }

    /// Files `v`, which made the values counted since `since`, into its parent.
    fn finish_value(&mut self, v: Value, anchor: usize, since: usize) {
        if anchor > 0 {
            self.anchors
                .insert(anchor, (v.clone(), self.values - since));
        }
        match self.stack.last_mut() {
            Some(Frame::Map(m, key, _, _)) => {
                if let Some((k, _)) = key.take() {
                    m.insert(k, v);
                }
                self.path.pop();
            }
            Some(Frame::Seq(items, _, _)) => {
                items.push(v);
                self.path.pop();
            }
            None => self.root = Some(v),
        }
    }

    fn fail(&mut self, line: usize, message: String) {
        if self.error.is_none() {
            self.error = Some(message);
            self.error_line = line;
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        // After an error nothing more is built (the parser still reports the rest).
        if self.error.is_some() {
            return;
        }
        match ev {
            Event::Scalar(text, style, anchor, _) => {
                let v = scalar(text, style);
                if !self.enter_value(line) {
                    let key = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    if let Some(Frame::Map(_, k, _, _)) = self.stack.last_mut() {
                        *k = Some((key, line));
                    }
                    return;
                }
                let since = self.values;
                if self.count(1, line) {
                    self.finish_value(v, anchor, since);
                }
            }
            Event::Alias(id) => {
                let size = self.anchors.get(&id).map(|(_, n)| *n);
                match size {
                    Some(n) if self.enter_value(line) => {
                        let since = self.values;
                        // Counted before the copy is made: a bomb stops here.
                        if self.count(n, line) {
                            let v = self.anchors[&id].0.clone();
                            self.finish_value(v, 0, since);
                        }
                    }
                    Some(_) => self.fail(line, "an alias cannot be a mapping key".into()),
                    None => self.fail(line, format!("unknown alias {id}")),
                }
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                let is_seq = matches!(ev, Event::SequenceStart(..));
                if !self.enter_value(line) {
                    let what = if is_seq { "a sequence" } else { "a mapping" };
                    return self.fail(line, format!("{what} cannot be a mapping key"));
                }
                if self.stack.len() >= MAX_DEPTH {
                    return self.fail(
                        line,
                        format!("the document nests deeper than {MAX_DEPTH} levels"),
                    );
                }
                let since = self.values;
                if !self.count(1, line) {
                    return;
                }
                self.stack.push(if is_seq {
                    Frame::Seq(Vec::new(), anchor, since)
                } else {
                    Frame::Map(Map::new(), None, anchor, since)
                });
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(items, anchor, since)) = self.stack.pop() {
                    self.finish_value(Value::Array(items), anchor, since);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(m, _, anchor, since)) = self.stack.pop() {
                    self.finish_value(Value::Object(m), anchor, since);
                }
            }
            Event::DocumentEnd => {
                if let Some(v) = self.root.take().filter(|v| !v.is_null()) {
                    self.documents.push(v);
                }
                // An anchor names a value within its own document only.
                self.anchors.clear();
            }
            _ => {}
        }
    }
}

/// YAML 1.2 core schema for plain scalars; quoted scalars are always strings.
fn scalar(text: String, style: TScalarStyle) -> Value {
    if style != TScalarStyle::Plain {
        return Value::String(text);
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::Number(i.into());
    }
    if text.contains(['.', 'e', 'E'])
        && text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '-')
    {
        if let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_and_their_lines() {
        let doc = "a: 1\nlist:\n  - name: x\n    on: true\n  - 'quoted 2'\nf: 1.5\nn: ~\n";
        let l = parse(doc).unwrap();
        assert_eq!(
            l.value,
            json!({"a": 1, "list": [{"name": "x", "on": true}, "quoted 2"], "f": 1.5, "n": null})
        );
        assert_eq!(l.lines["a"], 1);
        assert_eq!(l.lines["list[0].on"], 4);
        assert_eq!(l.lines["list[1]"], 5);
        assert_eq!(l.line_of("list[0].missing"), Some(3));
    }

    /// Issue 22, item 4: a few hundred bytes of nested aliases took the process past 18 GB.
    #[test]
    fn alias_bombs_deep_nesting_and_huge_documents_are_refused() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        assert!(bomb.len() < 1024, "{} bytes", bomb.len());
        let e = parse(&bomb).err().expect("refused");
        assert!(e.message.contains("aliases are expanded"), "{e:?}");
        // A few aliases of a small anchor are fine (decK files use them).
        let ok = parse("base: &b {retries: 5}\ns1: *b\ns2: *b\n").unwrap();
        assert_eq!(ok.value["s2"]["retries"], 5);
        let deep = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        let e = parse(&deep).err().expect("refused");
        assert!(e.message.contains("nests deeper"), "{e:?}");
        assert!(parse(&format!("{}1{}", "[".repeat(100), "]".repeat(100))).is_ok());
        let huge = format!("a: \"{}\"", "x".repeat(MAX_DOCUMENT_BYTES));
        let e = parse(&huge).err().expect("refused");
        assert!(e.message.contains("bytes, more than"), "{e:?}");
    }

    #[test]
    fn a_stream_gives_each_document() {
        let docs = parse_documents("a: 1\n---\n---\nb: &x [1]\nc: *x\n").unwrap();
        assert_eq!(docs, vec![json!({"a": 1}), json!({"b": [1], "c": [1]})]);
        let e = parse_documents("a: &x 1\n---\nb: *x\n").expect_err("refused");
        assert!(e.message.contains("unknown anchor"), "{e:?}");
    }

    #[test]
    fn json_is_read_too() {
        let l = parse("{\"a\": [1, \"2\"]}").unwrap();
        assert_eq!(l.value, json!({"a": [1, "2"]}));
    }

    #[test]
    fn syntax_errors_have_lines() {
        let e = parse("a: 1\nb: [1, 2\nc: 3\n").err().unwrap();
        assert!(e.line >= 2, "{e:?}");
    }

    #[test]
    fn an_entry_is_at_its_keys_line_even_when_its_value_is_a_block_below() {
        let doc = parse("a:\n  b: 1\nc:\n  - x\n  - y: 2\n").unwrap();
        let line = |p: &str| doc.line_of(p);
        assert_eq!(line("a"), Some(1));
        assert_eq!(line("a.b"), Some(2));
        assert_eq!(line("c"), Some(3));
        assert_eq!(line("c[0]"), Some(4));
        assert_eq!(line("c[1].y"), Some(5));
        assert_eq!(line("c[1].missing"), Some(5), "the nearest enclosing value");
    }
}

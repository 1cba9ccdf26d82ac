//! YAML (and JSON, which YAML reads too) into JSON values, remembering the line each value
//! starts on, so a validation error can point at the line that caused it.
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

pub fn parse(text: &str) -> Result<Located, SyntaxError> {
    let mut b = Builder::default();
    Parser::new_from_str(text)
        .load(&mut b, false)
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
    Ok(Located {
        value: b.root.unwrap_or(Value::Null),
        lines: b.lines,
    })
}

enum Frame {
    Seq(Vec<Value>, usize),
    /// The mapping so far, the key waiting for its value (and the key's line), the anchor.
    Map(Map<String, Value>, Option<(String, usize)>, usize),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    path: Vec<String>,
    root: Option<Value>,
    lines: HashMap<String, usize>,
    anchors: HashMap<usize, Value>,
    error: Option<String>,
    error_line: usize,
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
            Some(Frame::Map(_, None, _)) => return false,
            Some(Frame::Map(_, Some((k, key_line)), _)) => {
                line = *key_line;
                self.path.push(k.clone());
            }
            Some(Frame::Seq(items, _)) => self.path.push(format!("[{}]", items.len())),
            None => {}
        }
        self.lines.insert(self.current_path(), line);
        true
    }

    fn finish_value(&mut self, v: Value, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, v.clone());
        }
        match self.stack.last_mut() {
            Some(Frame::Map(m, key, _)) => {
                if let Some((k, _)) = key.take() {
                    m.insert(k, v);
                }
                self.path.pop();
            }
            Some(Frame::Seq(items, _)) => {
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
        match ev {
            Event::Scalar(text, style, anchor, _) => {
                let v = scalar(text, style);
                if !self.enter_value(line) {
                    let key = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    if let Some(Frame::Map(_, k, _)) = self.stack.last_mut() {
                        *k = Some((key, line));
                    }
                    return;
                }
                self.finish_value(v, anchor);
            }
            Event::Alias(id) => {
                let v = self.anchors.get(&id).cloned();
                match v {
                    Some(v) if self.enter_value(line) => self.finish_value(v, 0),
                    Some(_) => self.fail(line, "an alias cannot be a mapping key".into()),
                    None => self.fail(line, format!("unknown alias {id}")),
                }
            }
            Event::SequenceStart(anchor, _) => {
                if !self.enter_value(line) {
                    return self.fail(line, "a sequence cannot be a mapping key".into());
                }
                self.stack.push(Frame::Seq(Vec::new(), anchor));
            }
            Event::MappingStart(anchor, _) => {
                if !self.enter_value(line) {
                    return self.fail(line, "a mapping cannot be a mapping key".into());
                }
                self.stack.push(Frame::Map(Map::new(), None, anchor));
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(items, anchor)) = self.stack.pop() {
                    self.finish_value(Value::Array(items), anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(m, _, anchor)) = self.stack.pop() {
                    self.finish_value(Value::Object(m), anchor);
                }
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

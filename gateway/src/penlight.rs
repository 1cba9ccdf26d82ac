//! Values printed as Kong prints the Lua tables inside its error messages (penlight's
//! `pretty.write(t, "")`): `UNIQUE violation detected on '{username="slow_user"}'`,
//! `declarative config is invalid: {services={[2]="..."}}`. Scripts that parse Kong's messages
//! read Tollgate's the same way.
use serde_json::Value;

/// `v` printed as penlight's `pretty.write(t, "")` prints the Lua table Kong holds: keys
/// sorted, identifiers bare, lists without holes as `{a,b}`, with holes as `{[2]=b}`.
pub fn write(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    let bare = k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && !k.starts_with(|c: char| c.is_ascii_digit());
                    let key = if bare { k.clone() } else { format!("[{k:?}]") };
                    format!("{key}={}", write(&m[k]))
                })
                .collect();
            format!("{{{}}}", items.join(","))
        }
        Value::Array(a) if a.iter().any(Value::is_null) => {
            let items: Vec<String> = a
                .iter()
                .enumerate()
                .filter(|(_, v)| !v.is_null())
                .map(|(i, v)| format!("[{}]={}", i + 1, write(v)))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        Value::Array(a) => format!("{{{}}}", a.iter().map(write).collect::<Vec<_>>().join(",")),
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_print_as_penlight_writes_them() {
        assert_eq!(
            write(&json!({"username": "slow_user"})),
            "{username=\"slow_user\"}"
        );
        assert_eq!(
            write(&json!({"service": null, "name": "x", "consumer": {"id": "c"}})),
            "{consumer={id=\"c\"},name=\"x\",service=null}"
        );
        assert_eq!(write(&json!([null, "b"])), "{[2]=\"b\"}");
        assert_eq!(write(&json!({"a-b": [1, 2]})), "{[\"a-b\"]={1,2}}");
    }
}

//! A developer-portal plan as the admin API and declarative files write it: a name, requests
//! per second, minute, hour and day, and the services it covers (by name or id; none: every
//! published API). One definition for `/plans` and a file's `plans` list.
use super::schema::{self, field, Field, FieldErrors, Ty};
use crate::store::portal::{default_credentials, PlanLimits, CREDENTIALS};
use serde_json::{Map, Value};

pub const WINDOWS: [&str; 4] = ["second", "minute", "hour", "day"];
const LIMIT: Ty = Ty::Int {
    min: 1,
    max: i64::MAX,
};
pub const FIELDS: &[Field] = &[
    field("id", Ty::Str),
    field("name", Ty::Str),
    field("limits", Ty::Object),
    field("services", Ty::StrArray),
    field("credentials", Ty::StrArray),
    field(
        "created_at",
        Ty::Int {
            min: 0,
            max: i64::MAX,
        },
    ),
];
const LIMIT_FIELDS: &[Field] = &[
    field("second", LIMIT),
    field("minute", LIMIT),
    field("hour", LIMIT),
    field("day", LIMIT),
];
const MAX_NAME: usize = 64;

/// A plan's fields, checked; services still as they were named.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanInput {
    pub name: String,
    pub limits: PlanLimits,
    pub services: Vec<String>,
    /// The credentials its applications may pick, each one of `portal::CREDENTIALS`.
    pub credentials: Vec<String>,
}

/// Checks `fields` over `base` (a stored plan's values, for PATCH): known fields with their
/// types (form strings coerced when `form`), limits of at least 1 (`null` clears one), a name
/// of 1 to 64 characters.
pub fn check(
    mut fields: Map<String, Value>,
    base: Option<&PlanInput>,
    form: bool,
) -> Result<PlanInput, FieldErrors> {
    let mut errors = schema::check(FIELDS, &mut fields, form);
    let mut limits = base.map(|b| b.limits.clone()).unwrap_or_default();
    if let Some(Value::Object(given)) = fields.get_mut("limits") {
        errors.nest("limits", schema::check(LIMIT_FIELDS, given, form));
        for w in WINDOWS {
            if let Some(v) = given.get(w) {
                set_limit(&mut limits, w, v.as_u64());
            }
        }
    }
    let name = match (fields.get("name"), base) {
        (Some(Value::String(n)), _) => n.trim().to_string(),
        (_, Some(b)) => b.name.clone(),
        _ => String::new(),
    };
    if name.is_empty() {
        errors.add("name", "required field missing");
    } else if name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        errors.add(
            "name",
            format!("length must be at most {MAX_NAME}, without control characters"),
        );
    }
    let services = match fields.get("services") {
        Some(Value::Array(given)) => given
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => base.map(|b| b.services.clone()).unwrap_or_default(),
    };
    let credentials = match fields.get("credentials") {
        Some(Value::Array(given)) => given
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => base.map_or_else(default_credentials, |b| b.credentials.clone()),
    };
    if credentials.is_empty() {
        errors.add("credentials", "length must be at least 1");
    }
    let unknown = credentials.iter().map(|c| {
        (!CREDENTIALS.contains(&c.as_str()))
            .then(|| format!("expected one of: {}", CREDENTIALS.join(", ")))
    });
    let unknown: Vec<Option<String>> = unknown.collect();
    if unknown.iter().any(Option::is_some) {
        errors.elements("credentials", unknown);
    }
    errors.into_result()?;
    Ok(PlanInput {
        name,
        limits,
        services,
        credentials,
    })
}

fn set_limit(limits: &mut PlanLimits, window: &str, value: Option<u64>) {
    match window {
        "second" => limits.second = value,
        "minute" => limits.minute = value,
        "hour" => limits.hour = value,
        _ => limits.day = value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn plans_are_checked_and_patched() {
        let p = check(
            fields(json!({"name": "Free", "limits": {"second": 5}})),
            None,
            false,
        )
        .unwrap();
        assert_eq!((p.name.as_str(), p.limits.second), ("Free", Some(5)));
        let patched = check(
            fields(json!({"limits": {"second": null, "day": 9}})),
            Some(&p),
            false,
        )
        .unwrap();
        assert_eq!((patched.limits.second, patched.limits.day), (None, Some(9)));
        assert_eq!(patched.name, "Free");
        let e = check(fields(json!({"limits": {"hour": 0}, "x": 1})), None, false).unwrap_err();
        let v = e.to_value();
        assert_eq!(v["x"], "unknown field");
        assert_eq!(v["name"], "required field missing");
        assert!(v["limits"]["hour"].is_string());
        let form = check(
            fields(json!({"name": "G", "limits": {"minute": "60"}})),
            None,
            true,
        )
        .unwrap();
        assert_eq!(form.limits.minute, Some(60));
        assert_eq!(form.credentials, ["key-auth"], "API keys unless told");
        let e = check(
            fields(json!({"name": "G", "credentials": ["oauth2", "saml"]})),
            None,
            false,
        )
        .unwrap_err();
        assert_eq!(
            e.to_value()["credentials"],
            json!([null, "expected one of: key-auth, oauth2, jwt"])
        );
    }
}

//! Kong's transient `snis` of a certificate (kong/api/routes/certificates.lua,
//! kong/db/dao/certificates.lua): given on a write, the names become `snis` entities of that
//! certificate, replacing the ones it had; read back, a certificate lists its SNIs' names.
//! A name another certificate holds is refused before anything is stored.
use super::error::ApiError;
use super::AdminState;
use crate::model::{normalize, unix_now, Kind, Source};
use crate::store::ListQuery;
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// The most SNIs one certificate may carry.
const MAX_SNIS: usize = 1000;

/// The SNI names a certificate write gives (lower-cased; a form's single value as a list of
/// one); `None` when it gives none, which leaves the certificate's SNIs as they are. The
/// certificate's validation checks them; this only reads them.
pub(super) fn given(fields: &Map<String, Value>) -> Option<Vec<String>> {
    let names = match fields.get("snis")? {
        Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
        Value::String(name) => vec![name.as_str()],
        _ => return None,
    };
    Some(names.into_iter().map(str::to_ascii_lowercase).collect())
}

/// Refuses names held by another certificate, with Kong's message.
pub(super) async fn check_free(
    st: &AdminState,
    certificate: Uuid,
    names: &[String],
) -> Result<(), ApiError> {
    for name in names {
        let Some(sni) = st.store().get(Kind::Sni, name).await? else {
            continue;
        };
        let owner = sni["certificate"]["id"].as_str().unwrap_or_default();
        if owner != certificate.to_string() {
            let why = format!("{name} already associated with existing certificate '{owner}'");
            return Err(ApiError::Invalid {
                code: 2,
                name: "schema violation",
                message: format!("schema violation (snis: {why})"),
                fields: Some(json!({ "snis": why })),
            });
        }
    }
    Ok(())
}

/// Makes `names` the certificate's SNIs: new ones created, missing ones deleted.
pub(super) async fn replace(
    st: &AdminState,
    certificate: Uuid,
    names: &[String],
) -> Result<(), ApiError> {
    let current = of(st, certificate).await?;
    for sni in &current {
        let name = sni["name"].as_str().unwrap_or_default();
        if !names.iter().any(|n| n == name) {
            let id = Uuid::parse_str(sni["id"].as_str().unwrap_or_default())
                .map_err(|_| ApiError::NotFound)?;
            st.store().delete(Kind::Sni, id).await?;
        }
    }
    for name in names {
        if current.iter().any(|s| s["name"] == name.as_str()) {
            continue;
        }
        let mut fields = Map::new();
        fields.insert("name".into(), json!(name));
        fields.insert("certificate".into(), json!({ "id": certificate }));
        let n = normalize(Kind::Sni, fields, None, Source::Typed, unix_now())?;
        st.store().save(&n.record, false).await?;
    }
    Ok(())
}

/// The SNI entities of a certificate.
async fn of(st: &AdminState, certificate: Uuid) -> Result<Vec<Value>, ApiError> {
    let q = ListQuery {
        size: MAX_SNIS,
        parent: Some(("certificate_id", certificate)),
        ..ListQuery::default()
    };
    Ok(st.store().list(Kind::Sni, &q).await?.data)
}

/// A certificate as reads show it: with `snis`, its SNIs' names in order.
pub(super) async fn with_snis(st: &AdminState, mut body: Value) -> Result<Value, ApiError> {
    let Some(id) = body["id"].as_str().and_then(|s| Uuid::parse_str(s).ok()) else {
        return Ok(body);
    };
    let mut names: Vec<String> = of(st, id)
        .await?
        .iter()
        .filter_map(|s| s["name"].as_str().map(String::from))
        .collect();
    names.sort();
    body["snis"] = json!(names);
    Ok(body)
}

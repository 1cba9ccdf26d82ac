//! The parameters of an oauth2 request: Kong reads them from the query string and, for
//! POST, PUT and PATCH, from a form or JSON body, the body's value winning.
use super::super::body::{Field, FormBody};
use super::super::{Context, Reply};

pub struct Params {
    query: String,
    body: Option<FormBody>,
}

impl Params {
    /// The request's parameters; its body is read only when `with_body`.
    pub async fn read(ctx: &mut Context<'_>, with_body: bool) -> Result<Params, Reply> {
        let query = ctx.query().unwrap_or("").to_string();
        let body = match with_body {
            false => None,
            true => {
                let content_type = ctx.parts.headers.get(http::header::CONTENT_TYPE).cloned();
                let bytes = ctx.body().await?;
                FormBody::parse(content_type.as_ref().and_then(|v| v.to_str().ok()), bytes)
            }
        };
        Ok(Params { query, body })
    }

    /// What the request holds under `name`.
    pub fn get(&self, name: &str) -> Field {
        if let Some(body) = &self.body {
            match body.field(name) {
                Field::Missing => {}
                found => return found,
            }
        }
        let mut values = form_urlencoded::parse(self.query.as_bytes()).filter(|(k, _)| k == name);
        match (values.next(), values.next()) {
            (None, _) => Field::Missing,
            (Some((_, v)), None) => Field::One(v.into_owned()),
            _ => Field::Ambiguous,
        }
    }

    /// The value of `name` when it is one string.
    pub fn string(&self, name: &str) -> Option<String> {
        match self.get(name) {
            Field::One(v) => Some(v),
            Field::Missing | Field::Ambiguous => None,
        }
    }

    /// Takes `name` off what the upstream gets: the query string, and a form body (Kong's
    /// `hide_credentials` leaves JSON bodies alone).
    pub fn hide(self, ctx: &mut Context<'_>, name: &str) {
        ctx.drop_query_param(name);
        if let Some(form @ FormBody::Form(_)) = self.body {
            if ctx.parts.method != http::Method::GET {
                ctx.set_body(form.without(name));
            }
        }
    }
}

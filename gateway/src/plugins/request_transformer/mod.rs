//! request-transformer: changes the request before it goes upstream, as Kong's plugin does
//! (kong/plugins/request-transformer/access.lua), in its order: the path (`replace.uri`), the
//! method (`http_method`), headers, body (form, JSON or multipart) and query string; within
//! each, remove, rename, replace, add, append. `replace` touches only what exists, `add` only
//! what does not, `append` adds a value beside what is there. Values may be templates
//! (`template`) read from the request as the client sent it.
mod config;
mod edit;
pub mod template;

use super::{Access, Context, Flow, Handler, PluginSpec};
use bytes::Bytes;
use config::Group;
use edit::{Rendered, Target};
use http::{HeaderValue, Method};
use std::sync::Arc;
use template::{Env, Template};

pub const SPEC: PluginSpec = PluginSpec {
    name: "request-transformer",
    priority: 801,
    no_consumer: false,
    fields: config::FIELDS,
    defaults: config::defaults,
    validate: config::validate,
    build,
};

/// What a request body is, by its `Content-Type`, as Kong tells them apart.
#[derive(Clone, Copy, PartialEq)]
enum BodyKind {
    Json,
    Multipart,
    Form,
}

impl BodyKind {
    fn of(ctx: &Context<'_>) -> Option<BodyKind> {
        let ct = ctx.parts.headers.get(http::header::CONTENT_TYPE)?;
        let ct = ct.to_str().ok()?.to_ascii_lowercase();
        if ct.contains("application/json") {
            Some(BodyKind::Json)
        } else if ct.contains("multipart/form-data") {
            Some(BodyKind::Multipart)
        } else if ct.contains("application/x-www-form-urlencoded") {
            Some(BodyKind::Form)
        } else {
            None
        }
    }
}

struct RequestTransformer {
    method: Option<Method>,
    uri: Option<Template>,
    /// remove, rename, replace, add, append.
    ops: [Group; 5],
    /// Some template reads the query string (parsed for them only then).
    reads_query: bool,
    /// The entries' values that are templates, by `Entry::slot`: rendered per request
    /// without walking every entry.
    templates: Vec<Template>,
}

fn build(
    c: &serde_json::Map<String, serde_json::Value>,
    _: &super::chain::Scope,
    _: &Arc<super::Shared>,
) -> Result<Arc<dyn Handler>, String> {
    let config::Parsed {
        method,
        uri,
        groups: ops,
    } = config::parse(c)?;
    let reads_query = ops
        .iter()
        .flat_map(Group::templates)
        .chain(uri.iter())
        .any(Template::reads_query);
    let templates = ops
        .iter()
        .flat_map(Group::entries)
        .filter(|e| e.slot.is_some())
        .filter_map(|e| e.value.clone())
        .collect();
    Ok(Arc::new(RequestTransformer {
        method,
        uri,
        ops,
        reads_query,
        templates,
    }))
}

impl Handler for RequestTransformer {
    fn access<'a>(&'a self, ctx: &'a mut Context<'_>) -> Access<'a> {
        let kind = BodyKind::of(ctx);
        if !self.reads_body(kind) {
            return Access::Now(self.transform(ctx, kind, None));
        }
        Access::Later(Box::pin(async move {
            match ctx.body().await {
                Ok(body) => {
                    let body = body.clone();
                    self.transform(ctx, kind, Some(body))
                }
                Err(reply) => Flow::Respond(reply),
            }
        }))
    }
}

impl RequestTransformer {
    /// Whether the body (of `kind`) is read: it is one Kong edits and there is something to
    /// do to it, or the method becomes one without a body and a form's fields move to the query.
    fn reads_body(&self, kind: Option<BodyKind>) -> bool {
        let Some(kind) = kind else {
            return false;
        };
        self.ops.iter().any(|g| !g.body.is_empty())
            || (kind == BodyKind::Form && self.method.as_ref().is_some_and(bodiless))
    }

    /// Applies the edits; `kind` is the body's type as the client sent it, `body` the body
    /// when `reads_body` had it read.
    fn transform(
        &self,
        ctx: &mut Context<'_>,
        kind: Option<BodyKind>,
        body: Option<Bytes>,
    ) -> Flow {
        let query = if self.reads_query {
            ctx.query_params()
        } else {
            Vec::new()
        };
        let captures = |name: &str| ctx.uri_capture(name);
        let env = Env {
            headers: &ctx.parts.headers,
            query: &query,
            captures: &captures,
        };
        let rendered = Rendered::new(&self.ops, &self.templates, &env);
        let uri = self.uri.as_ref().map(|t| t.render(&env));
        if let Some(path) = uri.filter(|p| !p.is_empty()) {
            ctx.upstream_path = Some(edit::encode_path(&path));
        }
        // The body is read by the type the client gave, whatever the header edits make of it.
        let content_type = match (kind, &body) {
            (Some(_), Some(_)) => ctx.parts.headers.get(http::header::CONTENT_TYPE).cloned(),
            _ => None,
        };
        if let Some(method) = &self.method {
            ctx.parts.method = method.clone();
            if bodiless(method) && kind == Some(BodyKind::Form) {
                edit::form_to_query(ctx, body.as_deref().unwrap_or_default());
            }
        }
        ctx.fold_upstream_headers();
        if let Some(host) = rendered.headers(&mut ctx.parts.headers) {
            ctx.upstream_host = HeaderValue::from_str(&host).ok();
        }
        if let (Some(kind), Some(body)) = (kind, body) {
            let content_type = content_type.as_ref().and_then(|v| v.to_str().ok());
            if let Some(changed) = rendered.body(kind, content_type.unwrap_or(""), &body) {
                ctx.set_body(changed);
            }
        }
        if rendered.has(Target::Querystring) {
            if let Some(query) = rendered.query(ctx.query()) {
                ctx.set_query(query);
            }
        }
        Flow::Continue
    }
}

/// Methods whose requests carry no body, whose form fields Kong moves to the query string.
fn bodiless(method: &Method) -> bool {
    [Method::GET, Method::HEAD, Method::TRACE].contains(method)
}

#[cfg(test)]
mod tests;

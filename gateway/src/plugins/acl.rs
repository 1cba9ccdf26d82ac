//! acl: lets a request through by its consumer's groups, as Kong's plugin does
//! (kong/plugins/acl/handler.lua). `allow` lets only members of one of its groups in; `deny`
//! keeps members of any of its groups out. Allowed requests tell the upstream the consumer's
//! groups in `X-Consumer-Groups` unless `hide_groups_header`.
//!
//! Kong also reads groups an authentication plugin sets (`X-Authenticated-Groups`, from LDAP
//! or OAuth2 scopes); no plugin Tollgate runs sets them, so only consumer groups apply and
//! `always_use_authenticated_groups` is accepted for compatibility.
use super::{get_bool, get_strings, Access, Context, Flow, Handler, PluginSpec, Reply};
use crate::model::schema::{field, FieldErrors, Ty};
use http::{HeaderName, StatusCode};
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub const SPEC: PluginSpec = PluginSpec {
    name: "acl",
    priority: 950,
    no_consumer: true,
    fields: &[
        field("allow", Ty::StrArray),
        field("deny", Ty::StrArray),
        field("hide_groups_header", Ty::Bool),
        field("always_use_authenticated_groups", Ty::Bool),
    ],
    defaults,
    validate,
    build,
};

fn defaults() -> Map<String, Value> {
    let v = json!({"allow": null, "deny": null, "hide_groups_header": false,
        "always_use_authenticated_groups": false});
    v.as_object().cloned().unwrap_or_default()
}

fn validate(c: &mut Map<String, Value>, errors: &mut FieldErrors) {
    let given = |k: &str| !matches!(c.get(k), None | Some(Value::Null));
    let (allow, deny) = (given("allow"), given("deny"));
    if allow && deny {
        errors.add(
            "@entity",
            "only one of these fields must be non-empty: 'config.allow', 'config.deny'",
        );
    }
    if !allow && !deny {
        errors.add(
            "@entity",
            "at least one of these fields must be non-empty: 'config.allow', 'config.deny'",
        );
    }
}

const FORBIDDEN: &str = "You cannot consume this service";

struct Acl {
    /// `deny` was given (Kong: a non-empty deny list makes the instance a deny list).
    deny: bool,
    groups: Vec<String>,
    hide_groups_header: bool,
}

fn build(
    c: &Map<String, Value>,
    _: &super::chain::Scope,
    _: &Arc<super::Shared>,
) -> Result<Arc<dyn Handler>, String> {
    let deny_list = get_strings(c, "deny");
    let deny = !deny_list.is_empty();
    Ok(Arc::new(Acl {
        deny,
        groups: if deny {
            deny_list
        } else {
            get_strings(c, "allow")
        },
        hide_groups_header: get_bool(c, "hide_groups_header"),
    }))
}

static CONSUMER_GROUPS: HeaderName = HeaderName::from_static("x-consumer-groups");

impl Handler for Acl {
    fn access<'a>(&'a self, ctx: &'a mut Context<'_>) -> Access<'a> {
        Access::Now(self.decide(ctx))
    }
}

impl Acl {
    fn decide(&self, ctx: &mut Context<'_>) -> Flow {
        let Some(consumer) = ctx.consumer.as_ref().map(|c| c.id) else {
            return self.unidentified(ctx);
        };
        let judged = ctx.snapshot.consumers.groups(consumer).map(|groups| {
            let member = groups.names.iter().any(|g| self.groups.contains(g));
            (member, groups.header.clone())
        });
        let Some((member, header)) = judged else {
            // A consumer in no group passes a deny list and fails an allow list.
            return if self.deny {
                Flow::Continue
            } else {
                self.unidentified(ctx)
            };
        };
        if member == self.deny {
            return Flow::Respond(Reply::new(StatusCode::FORBIDDEN, FORBIDDEN));
        }
        if !self.hide_groups_header {
            ctx.set_upstream_header(CONSUMER_GROUPS.clone(), header);
        }
        Flow::Continue
    }

    /// No groups to judge by: 403 when a credential was presented, else 401.
    fn unidentified(&self, ctx: &Context<'_>) -> Flow {
        Flow::Respond(if ctx.credential.is_some() {
            Reply::new(StatusCode::FORBIDDEN, FORBIDDEN)
        } else {
            Reply::new(StatusCode::UNAUTHORIZED, "Unauthorized")
        })
    }
}

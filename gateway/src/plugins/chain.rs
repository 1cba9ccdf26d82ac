//! Which plugin instances apply to a request, by Kong's precedence, and running them.
//!
//! When the same plugin is configured at several scopes the most specific wins: Route+Service+
//! Consumer, Route+Consumer, Service+Consumer, Route+Service, Consumer, Route, Service, Global.
//! The index is built with the snapshot, and from it each route's plan: the instance of each
//! plugin that applies to the route's requests. A request walks its route's plan and probes the
//! index only for a consumer-scoped instance that could outrank the plan's, once authentication
//! (a higher-priority plugin) set the consumer.
use super::{spec, Context, Flow, Handler, PluginSpec, Shared};
use crate::model::{ref_id, Plugin};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// The route and service an instance is attached to (either may be unset).
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope {
    pub route: Option<Uuid>,
    pub service: Option<Uuid>,
}

/// Kong's eight levels, most specific first, as (route, service, consumer) present.
const LEVELS: [(bool, bool, bool); 8] = [
    (true, true, true),
    (true, false, true),
    (false, true, true),
    (true, true, false),
    (false, false, true),
    (true, false, false),
    (false, true, false),
    (false, false, false),
];

type Key = (usize, Option<Uuid>, Option<Uuid>, Option<Uuid>);

/// The enabled plugin instances of a snapshot.
#[derive(Default)]
pub struct PluginIndex {
    /// Plugins with at least one enabled instance, highest priority first.
    order: Vec<&'static PluginSpec>,
    /// For each plugin in `order`, a bit per level of `LEVELS` that has an instance.
    levels: Vec<u8>,
    /// Probed for each plugin and level a request could use: foldhash, not SipHash.
    handlers: HashMap<Key, Arc<dyn Handler>, foldhash::fast::RandomState>,
}

impl PluginIndex {
    /// Builds every enabled instance's handler. A config that cannot be built fails the
    /// snapshot, so the running one stays.
    pub fn build(plugins: &[Plugin], shared: &Arc<Shared>) -> Result<PluginIndex, String> {
        let mut order: Vec<&'static PluginSpec> = plugins
            .iter()
            .filter(|p| p.enabled)
            .filter_map(|p| spec(&p.name))
            .collect();
        order.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(b.name)));
        order.dedup_by(|a, b| a.name == b.name);
        let mut index = PluginIndex {
            levels: vec![0; order.len()],
            order,
            handlers: HashMap::default(),
        };
        for p in plugins.iter().filter(|p| p.enabled) {
            let Some(i) = index.order.iter().position(|s| s.name == p.name) else {
                return Err(format!(
                    "plugin {}: '{}' is not in this build",
                    p.id, p.name
                ));
            };
            let scope = Scope {
                route: ref_id(&p.route),
                service: ref_id(&p.service),
            };
            let consumer = ref_id(&p.consumer);
            let handler = (index.order[i].build)(&p.config, &scope, shared)
                .map_err(|e| format!("plugin {} ({}): {e}", p.id, p.name))?;
            let level = (
                scope.route.is_some(),
                scope.service.is_some(),
                consumer.is_some(),
            );
            let bit = LEVELS.iter().position(|l| *l == level).unwrap_or(7);
            index.levels[i] |= 1 << bit;
            index
                .handlers
                .insert((i, scope.route, scope.service, consumer), handler);
        }
        Ok(index)
    }

    /// The plugins that apply to requests on `route` (of `service`), in priority order.
    pub fn plan(&self, route: Uuid, service: Option<Uuid>) -> Plan {
        let steps = (0..self.order.len())
            .filter_map(|i| {
                let found = self.resolve(i, route, service, None);
                let above = found.map_or(LEVELS.len(), |(level, _)| level);
                let consumer_may_win =
                    (0..above).any(|level| LEVELS[level].2 && self.levels[i] & (1 << level) != 0);
                let fallback = found.map(|(_, handler)| handler.clone());
                (fallback.is_some() || consumer_may_win).then_some(Step {
                    plugin: i,
                    fallback,
                    consumer_may_win,
                })
            })
            .collect();
        Plan { steps }
    }

    /// The instance of the `i`th plugin that applies to this route, service and consumer,
    /// with its level in `LEVELS`.
    fn resolve(
        &self,
        i: usize,
        route: Uuid,
        service: Option<Uuid>,
        consumer: Option<Uuid>,
    ) -> Option<(usize, &Arc<dyn Handler>)> {
        LEVELS.iter().enumerate().find_map(|(bit, &(r, s, c))| {
            if self.levels[i] & (1 << bit) == 0
                || (s && service.is_none())
                || (c && consumer.is_none())
            {
                return None;
            }
            let key = (
                i,
                r.then_some(route),
                service.filter(|_| s),
                consumer.filter(|_| c),
            );
            self.handlers.get(&key).map(|h| (bit, h))
        })
    }

    /// The instance a step of a plan runs for this request.
    fn instance<'a>(&'a self, step: &'a Step, ctx: &Context<'_>) -> Option<&'a Arc<dyn Handler>> {
        match &ctx.consumer {
            Some(consumer) if step.consumer_may_win => self
                .resolve(step.plugin, ctx.route_id, ctx.service_id, Some(consumer.id))
                .map(|(_, handler)| handler),
            _ => step.fallback.as_ref(),
        }
    }

    /// Runs the access phase of every plugin in `plan`, highest priority first, until one
    /// answers the client.
    pub async fn access(&self, plan: &Plan, ctx: &mut Context<'_>) -> Flow {
        for (n, step) in plan.steps.iter().enumerate() {
            let Some(handler) = self.instance(step, ctx) else {
                continue;
            };
            if handler.on_response() {
                ctx.response_plugins.push(handler.clone());
            }
            if let Flow::Respond(reply) = handler.access(ctx).decided().await {
                ctx.rejected_by = Some(self.order[step.plugin].name);
                self.collect_after(&plan.steps[n + 1..], ctx);
                return Flow::Respond(reply);
            }
        }
        Flow::Continue
    }

    /// After a plugin answered the client, the lower-priority instances (`rest`) skip access
    /// but, as in Kong, still see the response and the log (a global file-log logs the 401s too).
    fn collect_after(&self, rest: &[Step], ctx: &mut Context<'_>) {
        for step in rest {
            if let Some(h) = self.instance(step, ctx) {
                if h.on_response() {
                    ctx.response_plugins.push(h.clone());
                }
            }
        }
    }
}

/// The plugins that can apply to one route's requests, highest priority first.
#[derive(Default)]
pub struct Plan {
    steps: Vec<Step>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// One plugin of a plan.
struct Step {
    /// Its place in `PluginIndex::order`.
    plugin: usize,
    /// Its instance for a request without a consumer, or whose consumer has none of its own.
    fallback: Option<Arc<dyn Handler>>,
    /// Whether a consumer-scoped instance outranks `fallback`: a request with a consumer then
    /// probes the index for its own.
    consumer_may_win: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{normalized_body, Kind};
    use crate::snapshot::ConsumerEntry;
    use serde_json::{json, Value};

    const ROUTE: &str = "00000000-0000-0000-0000-0000000000a1";
    const SERVICE: &str = "00000000-0000-0000-0000-0000000000b2";
    const CONSUMER: &str = "00000000-0000-0000-0000-0000000000c3";

    /// A rate-limiting instance at `level` whose per-second limit names the level (1..=8).
    fn instance(level: usize) -> Plugin {
        let (r, s, c) = LEVELS[level];
        let scope = |on: bool, id: &str| if on { json!({ "id": id }) } else { Value::Null };
        let body = normalized_body(
            Kind::Plugin,
            json!({
                "id": uuid::Uuid::new_v4(), "name": "rate-limiting",
                "config": {"second": level + 1},
                "route": scope(r, ROUTE), "service": scope(s, SERVICE), "consumer": scope(c, CONSUMER),
            }),
        )
        .unwrap();
        serde_json::from_value(body).unwrap()
    }

    /// The per-second limit of the instance that ran for a request with or without a consumer.
    async fn winner(index: &PluginIndex, with_consumer: bool) -> Option<String> {
        let (parts, _) = http::Request::new(()).into_parts();
        let mut ctx = Context::for_test(parts);
        ctx.route_id = ROUTE.parse().unwrap();
        ctx.service_id = Some(SERVICE.parse().unwrap());
        ctx.consumer = with_consumer
            .then(|| Arc::new(ConsumerEntry::new(CONSUMER.parse().unwrap(), None, None)));
        let plan = index.plan(ctx.route_id, ctx.service_id);
        index.access(&plan, &mut ctx).await;
        let (_, limit) = ctx
            .response_headers
            .iter()
            .find(|(name, _)| name == "x-ratelimit-limit-second")?;
        Some(limit.to_str().unwrap().to_string())
    }

    #[tokio::test]
    async fn the_most_specific_of_kongs_eight_levels_wins() {
        let shared = Arc::new(Shared::default());
        for most_specific in 0..8 {
            let plugins: Vec<Plugin> = (most_specific..8).map(instance).collect();
            let index = PluginIndex::build(&plugins, &shared).unwrap();
            let expected = (most_specific + 1).to_string();
            assert_eq!(
                winner(&index, true).await.as_deref(),
                Some(expected.as_str())
            );
        }
    }

    #[tokio::test]
    async fn consumer_levels_apply_only_once_a_consumer_is_known() {
        let shared = Arc::new(Shared::default());
        let only_consumer = PluginIndex::build(&[instance(4)], &shared).unwrap();
        assert_eq!(winner(&only_consumer, false).await, None);
        let mixed = PluginIndex::build(&[instance(1), instance(6)], &shared).unwrap();
        assert_eq!(winner(&mixed, false).await.as_deref(), Some("7"));
        assert_eq!(winner(&mixed, true).await.as_deref(), Some("2"));
    }

    #[test]
    fn a_plan_holds_only_the_plugins_that_apply_to_its_route() {
        let shared = Arc::new(Shared::default());
        let (route, service) = (ROUTE.parse().unwrap(), Some(SERVICE.parse().unwrap()));
        let route_only = PluginIndex::build(&[instance(5)], &shared).unwrap();
        assert!(!route_only.plan(route, service).is_empty());
        assert!(route_only.plan(Uuid::nil(), service).is_empty());
        let consumer_only = PluginIndex::build(&[instance(4)], &shared).unwrap();
        assert!(!consumer_only.plan(Uuid::nil(), None).is_empty());
    }
}

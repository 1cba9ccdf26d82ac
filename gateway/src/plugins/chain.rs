//! Which plugin instances apply to a request, by Kong's precedence, and running them.
//!
//! When the same plugin is configured at several scopes the most specific wins, by Kong's
//! twelve levels (consumer groups, Kong Enterprise's, among them): Consumer+Route+Service,
//! Group+Route+Service, Consumer+Route, Consumer+Service, Group+Route, Group+Service,
//! Route+Service, Consumer, Group, Route, Service, Global. A consumer in several groups gets the
//! instance of the first group by name that has one.
//! The index is built with the snapshot, and from it each route's plan: the instance of each
//! plugin that applies to the route's requests. A request walks its route's plan and probes the
//! index only for a consumer-scoped instance that could outrank the plan's, once authentication
//! (a higher-priority plugin) set the consumer.
use super::{spec, Context, Flow, Handler, PluginSpec, Shared};
use crate::model::{ref_id, Plugin};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// The instance, and the route and service it is attached to (either may be unset).
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope {
    pub plugin: Uuid,
    pub route: Option<Uuid>,
    pub service: Option<Uuid>,
}

/// Which of an instance's scope fields are set.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Level {
    route: bool,
    service: bool,
    consumer: bool,
    group: bool,
}

const fn level(route: bool, service: bool, consumer: bool, group: bool) -> Level {
    Level {
        route,
        service,
        consumer,
        group,
    }
}

/// Kong's twelve levels, most specific first.
const LEVELS: [Level; 12] = [
    level(true, true, true, false),
    level(true, true, false, true),
    level(true, false, true, false),
    level(false, true, true, false),
    level(true, false, false, true),
    level(false, true, false, true),
    level(true, true, false, false),
    level(false, false, true, false),
    level(false, false, false, true),
    level(true, false, false, false),
    level(false, true, false, false),
    level(false, false, false, false),
];

/// An instance by plugin, route, service, consumer and consumer group.
type Key = (
    usize,
    Option<Uuid>,
    Option<Uuid>,
    Option<Uuid>,
    Option<Uuid>,
);

/// Who a request is, for the levels that depend on it: its consumer and that consumer's groups.
#[derive(Clone, Copy, Default)]
struct Caller<'a> {
    consumer: Option<Uuid>,
    groups: &'a [Uuid],
}

/// The enabled plugin instances of a snapshot.
#[derive(Default)]
pub struct PluginIndex {
    /// Plugins with at least one enabled instance, highest priority first.
    order: Vec<&'static PluginSpec>,
    /// For each plugin in `order`, a bit per level of `LEVELS` that has an instance.
    levels: Vec<u16>,
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
                plugin: p.id,
                route: ref_id(&p.route),
                service: ref_id(&p.service),
            };
            let (consumer, group) = (ref_id(&p.consumer), ref_id(&p.consumer_group));
            let handler = (index.order[i].build)(&p.config, &scope, shared)
                .map_err(|e| format!("plugin {} ({}): {e}", p.id, p.name))?;
            let at = level(
                scope.route.is_some(),
                scope.service.is_some(),
                consumer.is_some(),
                group.is_some(),
            );
            let Some(bit) = LEVELS.iter().position(|l| *l == at) else {
                return Err(format!(
                    "plugin {}: a consumer and a consumer group both",
                    p.id
                ));
            };
            index.levels[i] |= 1 << bit;
            index
                .handlers
                .insert((i, scope.route, scope.service, consumer, group), handler);
        }
        Ok(index)
    }

    /// The plugins that apply to requests on `route` (of `service`), in priority order.
    pub fn plan(&self, route: Uuid, service: Option<Uuid>) -> Plan {
        let steps = (0..self.order.len())
            .filter_map(|i| {
                let found = self.resolve(i, route, service, Caller::default());
                let above = found.map_or(LEVELS.len(), |(level, _)| level);
                let consumer_may_win = (0..above).any(|l| {
                    (LEVELS[l].consumer || LEVELS[l].group) && self.levels[i] & (1 << l) != 0
                });
                let fallback = found.map(|(_, handler)| handler.clone());
                (fallback.is_some() || consumer_may_win).then_some(Step {
                    plugin: i,
                    fallback,
                    consumer_may_win,
                })
            })
            .collect::<Vec<Step>>();
        let traced = steps
            .iter()
            .any(|s| self.order[s.plugin].name == super::opentelemetry::SPEC.name);
        Plan { steps, traced }
    }

    /// The instance of the `i`th plugin that applies to this route, service and caller,
    /// with its level in `LEVELS`.
    fn resolve(
        &self,
        i: usize,
        route: Uuid,
        service: Option<Uuid>,
        caller: Caller<'_>,
    ) -> Option<(usize, &Arc<dyn Handler>)> {
        LEVELS.iter().enumerate().find_map(|(bit, l)| {
            if self.levels[i] & (1 << bit) == 0
                || (l.service && service.is_none())
                || (l.consumer && caller.consumer.is_none())
            {
                return None;
            }
            let key = |group: Option<Uuid>| {
                (
                    i,
                    l.route.then_some(route),
                    service.filter(|_| l.service),
                    caller.consumer.filter(|_| l.consumer),
                    group,
                )
            };
            let found = if l.group {
                caller
                    .groups
                    .iter()
                    .find_map(|g| self.handlers.get(&key(Some(*g))))
            } else {
                self.handlers.get(&key(None))
            };
            found.map(|h| (bit, h))
        })
    }

    /// The instance a step of a plan runs for this request.
    fn instance<'a>(&'a self, step: &'a Step, ctx: &Context<'_>) -> Option<&'a Arc<dyn Handler>> {
        match &ctx.consumer {
            Some(consumer) if step.consumer_may_win => {
                let caller = Caller {
                    consumer: Some(consumer.id),
                    groups: ctx.snapshot.consumers.consumer_groups(consumer.id),
                };
                self.resolve(step.plugin, ctx.route_id, ctx.service_id, caller)
                    .map(|(_, handler)| handler)
            }
            _ => step.fallback.as_ref(),
        }
    }

    /// Runs the access phase of every plugin in `plan`, highest priority first, until one
    /// answers the client.
    pub async fn access(&self, plan: &Plan, ctx: &mut Context<'_>) -> Flow {
        if plan.traced {
            ctx.phases = Some(Arc::default());
            for step in &plan.steps {
                if let Some(handler) = self.instance(step, ctx) {
                    handler.begin(ctx);
                }
            }
        }
        for (n, step) in plan.steps.iter().enumerate() {
            let Some(handler) = self.instance(step, ctx) else {
                continue;
            };
            if handler.on_response() {
                ctx.response_plugins.push(handler.clone());
            }
            let start = plan.traced.then(std::time::Instant::now);
            let flow = handler.access(ctx).decided().await;
            if let (Some(start), Some(phases)) = (start, &ctx.phases) {
                phases.record(self.order[step.plugin].name, start);
            }
            if let Flow::Respond(reply) = flow {
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
    /// The plan has opentelemetry: its requests' phases are timed.
    traced: bool,
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
    /// Whether a consumer- or group-scoped instance outranks `fallback`: a request with a consumer then
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
    /// The consumer's two groups: `gold` (tried first, by name) and `silver`.
    const GOLD: &str = "00000000-0000-0000-0000-0000000000d4";
    const SILVER: &str = "00000000-0000-0000-0000-0000000000e5";

    /// A rate-limiting instance at `level` whose per-second limit names the level (1..=12);
    /// a group level's instance is the `group`'s.
    fn grouped(level: usize, group: &str) -> Plugin {
        let l = LEVELS[level];
        let scope = |on: bool, id: &str| if on { json!({ "id": id }) } else { Value::Null };
        let body = normalized_body(
            Kind::Plugin,
            json!({
                "id": uuid::Uuid::new_v4(), "name": "rate-limiting",
                "config": {"second": level + 1},
                "route": scope(l.route, ROUTE), "service": scope(l.service, SERVICE),
                "consumer": scope(l.consumer, CONSUMER),
                "consumer_group": scope(l.group, group),
            }),
        )
        .unwrap();
        serde_json::from_value(body).unwrap()
    }

    fn instance(level: usize) -> Plugin {
        grouped(level, GOLD)
    }

    /// A snapshot whose consumer belongs to `silver` and `gold`.
    fn members() -> Arc<crate::snapshot::Snapshot> {
        let mut snapshot = crate::snapshot::Snapshot::empty();
        let c = &mut snapshot.consumers;
        let consumer = json!({"id": CONSUMER, "username": "ann", "custom_id": null, "tags": null,
            "created_at": 1, "updated_at": 1});
        c.add_consumer(serde_json::from_value(consumer).unwrap());
        for (id, name) in [(SILVER, "silver"), (GOLD, "gold")] {
            let group =
                json!({"id": id, "name": name, "tags": null, "created_at": 1, "updated_at": 1});
            c.add_group(serde_json::from_value(group).unwrap());
            let member = json!({"id": uuid::Uuid::new_v4(), "consumer_group": {"id": id},
                "consumer": {"id": CONSUMER}, "created_at": 1, "updated_at": 1});
            c.add_credential(Kind::ConsumerGroupMember, &member)
                .unwrap();
        }
        Arc::new(snapshot)
    }

    /// The per-second limit of the instance that ran for a request with or without a consumer.
    async fn winner(index: &PluginIndex, with_consumer: bool) -> Option<String> {
        let (parts, _) = http::Request::new(()).into_parts();
        let mut ctx = Context::for_test(parts);
        ctx.route_id = ROUTE.parse().unwrap();
        ctx.service_id = Some(SERVICE.parse().unwrap());
        ctx.consumer = with_consumer
            .then(|| Arc::new(ConsumerEntry::new(CONSUMER.parse().unwrap(), None, None)));
        ctx.snapshot = members();
        let plan = index.plan(ctx.route_id, ctx.service_id);
        index.access(&plan, &mut ctx).await;
        let (_, limit) = ctx
            .response_headers
            .iter()
            .find(|(name, _)| name == "x-ratelimit-limit-second")?;
        Some(limit.to_str().unwrap().to_string())
    }

    #[tokio::test]
    async fn the_most_specific_of_kongs_twelve_levels_wins() {
        let shared = Arc::new(Shared::default());
        for most_specific in 0..LEVELS.len() {
            let plugins: Vec<Plugin> = (most_specific..LEVELS.len()).map(instance).collect();
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
        let only_consumer = PluginIndex::build(&[instance(7)], &shared).unwrap();
        assert_eq!(winner(&only_consumer, false).await, None);
        let mixed = PluginIndex::build(&[instance(2), instance(10)], &shared).unwrap();
        assert_eq!(winner(&mixed, false).await.as_deref(), Some("11"));
        assert_eq!(winner(&mixed, true).await.as_deref(), Some("3"));
        // A group's instance applies to its members only once they are identified.
        let group_only = PluginIndex::build(&[instance(8), instance(11)], &shared).unwrap();
        assert_eq!(winner(&group_only, false).await.as_deref(), Some("12"));
        assert_eq!(winner(&group_only, true).await.as_deref(), Some("9"));
    }

    /// Kong Enterprise: a consumer in two groups with an instance each gets the instance of
    /// the group first by name (`gold` before `silver`, whatever the order they were added).
    #[tokio::test]
    async fn of_two_groups_the_first_by_name_wins() {
        let shared = Arc::new(Shared::default());
        let mut silver = grouped(8, SILVER);
        silver.config.insert("second".into(), json!(100));
        let both = PluginIndex::build(&[silver.clone(), instance(8)], &shared).unwrap();
        assert_eq!(winner(&both, true).await.as_deref(), Some("9"));
        let only_silver = PluginIndex::build(&[silver], &shared).unwrap();
        assert_eq!(winner(&only_silver, true).await.as_deref(), Some("100"));
    }

    #[test]
    fn a_plan_holds_only_the_plugins_that_apply_to_its_route() {
        let shared = Arc::new(Shared::default());
        let (route, service) = (ROUTE.parse().unwrap(), Some(SERVICE.parse().unwrap()));
        let route_only = PluginIndex::build(&[instance(9)], &shared).unwrap();
        assert!(!route_only.plan(route, service).is_empty());
        assert!(route_only.plan(Uuid::nil(), service).is_empty());
        let consumer_only = PluginIndex::build(&[instance(7)], &shared).unwrap();
        assert!(!consumer_only.plan(Uuid::nil(), None).is_empty());
    }
}

//! Cordon, drain and rescheduling (issue 19). A cordoned node keeps what
//! runs there but takes no new instance (placement's `cordoned`). A drain
//! cordons the node and moves its instances to other nodes one batch at a
//! time, under each service's update gates. An instance whose node stays
//! lost longer than its service's `x-convoy.reschedule_after` (or whose
//! node was removed) is placed on another node. Every change is one
//! commit; the passes run from the sweep loop and cost nothing while no
//! node is lost or draining.

use std::collections::BTreeSet;

use super::*;

/// A node the coordinator has not heard from: since when, and when the
/// reschedule pass should look at it next.
#[derive(Debug, Clone, Copy)]
pub(super) struct LostNode {
    pub(super) since_unix_ms: i64,
    pub(super) next_check_unix_ms: i64,
}

impl LostNode {
    pub(super) fn since(since_unix_ms: i64) -> Self {
        Self {
            since_unix_ms,
            next_check_unix_ms: since_unix_ms,
        }
    }
}

/// How often instances that no node can take are tried again.
const RETRY_STUCK_MS: i64 = 5_000;

/// In memory: the nodes being drained (their records say so too, so a
/// restarted coordinator goes on), since when each instance has been
/// healthy on its node (min healthy time), and what cannot move now.
#[derive(Default)]
pub(super) struct DrainBook {
    pub(super) draining: BTreeSet<String>,
    /// (instance id, node) → healthy there since (unix ms).
    healthy_since: HashMap<(String, String), i64>,
    /// Draining node → "ENV/SERVICE/N: cannot move: why" for instances no
    /// other node can take now.
    pub(super) blocked: HashMap<String, Vec<String>>,
    /// Draining node → what the drain waits for (gates, rollouts).
    pub(super) waiting: HashMap<String, Vec<String>>,
    /// Instances whose reschedule found no node, already told by an event.
    told: HashSet<String>,
    /// Draining node → the instances its drain moved (env, service,
    /// index): the drain ends once they are healthy where they went.
    moved: HashMap<String, BTreeSet<(String, String, u32)>>,
}

/// Whether instances of `spec` ever move to another node: units are bound
/// to their host, a global service has one instance per node, and a Swarm
/// service's instance is its driver (it fails over by itself).
fn movable(spec: &ServiceSpec) -> bool {
    !spec.is_unit() && !spec.is_global() && spec.swarm.is_none()
}

/// A blue-green rollout keeps both sets where they are until it ends.
fn blue_green_active(rec: &ServiceRecord) -> bool {
    rec.rollout
        .as_ref()
        .is_some_and(|r| r.state.is_active() && r.has_blue())
}

impl Coordinator {
    pub(super) fn drain_book(&self) -> std::sync::MutexGuard<'_, DrainBook> {
        self.drains.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `convoy node cordon|uncordon`. Uncordoning ends a drain in progress
    /// and lets pending instances take the node.
    pub async fn cordon(&self, node: &str, cordon: bool) -> Result<Cordoned, StateError> {
        let connected = self.connected();
        let mut txn = self.begin("node cordon").await;
        let Some(record) = txn.desired().nodes.get(node).cloned() else {
            return Err(StateError::NodeNotFound(node.to_string()));
        };
        if record.removed_unix_ms != 0 {
            return Err(StateError::Invalid(format!(
                "node `{node}` was removed (`convoy node remove`): it runs nothing and takes nothing"
            )));
        }
        let response = Cordoned {
            was_cordoned: record.cordoned,
            drain_stopped: !cordon && record.draining,
        };
        if record.cordoned == cordon && !response.drain_stopped {
            return Ok(response);
        }
        let updated = NodeRecord {
            cordoned: cordon,
            draining: cordon && record.draining,
            drained: cordon && record.drained,
            ..record
        };
        let (next, ops, events) = txn.parts();
        ops.push(Op::put_json(format!("nodes/{node}"), &updated));
        Arc::make_mut(&mut next.nodes).insert(node.to_string(), updated);
        if !cordon {
            // Pending instances (a scale-up while it was cordoned) may go there now.
            replace_all(next, &connected, ops);
        }
        let (kind, what) = if cordon {
            (
                EventKind::NodeCordoned,
                "cordoned: it takes no new instance",
            )
        } else if response.drain_stopped {
            (
                EventKind::NodeUncordoned,
                "uncordoned: its drain stopped, and it takes new instances",
            )
        } else {
            (
                EventKind::NodeUncordoned,
                "uncordoned: it takes new instances",
            )
        };
        events.push(Ev::new(kind).node(node).msg(format!("node {node} {what}")));
        txn.replan();
        txn.commit().await?;
        if !cordon {
            let mut book = self.drain_book();
            book.draining.remove(node);
            book.blocked.remove(node);
            book.waiting.remove(node);
            book.moved.remove(node);
        }
        tracing::info!(node, cordon, "node cordon");
        Ok(response)
    }

    /// `convoy node drain`: cordons the node and marks it draining; the
    /// drain pass ([`Self::drive_drains`]) moves its instances.
    pub async fn drain(&self, node: &str) -> Result<DrainStarted, StateError> {
        let mut txn = self.begin("node drain").await;
        let Some(record) = txn.desired().nodes.get(node).cloned() else {
            return Err(StateError::NodeNotFound(node.to_string()));
        };
        if record.removed_unix_ms != 0 {
            return Err(StateError::Invalid(format!(
                "node `{node}` was removed (`convoy node remove`): its instances were moved already"
            )));
        }
        let (mut instances, mut staying) = (0u32, 0u32);
        for rec in txn.desired().services.values().filter(|r| !r.deleted) {
            let on = rec
                .assignments
                .values()
                .filter(|n| n.as_deref() == Some(node))
                .count() as u32;
            if rec.spec.is_unit() || rec.spec.swarm.is_some() {
                staying += on;
            } else {
                instances += on;
            }
        }
        if !(record.cordoned && record.draining) {
            let updated = NodeRecord {
                cordoned: true,
                draining: true,
                drained: false,
                ..record
            };
            let (next, ops, events) = txn.parts();
            ops.push(Op::put_json(format!("nodes/{node}"), &updated));
            Arc::make_mut(&mut next.nodes).insert(node.to_string(), updated);
            events.push(
                Ev::new(EventKind::NodeDraining)
                    .node(node)
                    .msg(format!(
                        "node {node} draining: cordoned; {instances} instance(s) to move"
                    ))
                    .field("instances", instances),
            );
            txn.commit().await?;
        }
        self.drain_book().draining.insert(node.to_string());
        tracing::info!(node, instances, staying, "node drain");
        Ok(DrainStarted { instances, staying })
    }

    /// The nodes whose records say they drain (on load: a restarted
    /// coordinator goes on with their drains).
    pub(super) fn resume_drains(&self, desired: &Desired) {
        let mut book = self.drain_book();
        book.draining = desired
            .nodes
            .values()
            .filter(|n| n.draining && n.removed_unix_ms == 0)
            .map(|n| n.name.clone())
            .collect();
    }

    /// Every known node is lost until its agent connects to this
    /// coordinator (after a restart: counted from now); removed nodes
    /// have been gone for ever.
    pub(super) fn mark_all_lost(&self, desired: &Desired, now: i64) {
        let mut live = self.live();
        for n in desired.nodes.values() {
            let since = if n.removed_unix_ms != 0 { 0 } else { now };
            live.lost.insert(n.name.clone(), LostNode::since(since));
        }
    }

    /// What `convoy nodes` says of a drain: the instances it cannot move,
    /// and what it waits for.
    pub(super) fn drain_notes(&self, node: &str) -> (Vec<String>, Vec<String>) {
        let book = self.drain_book();
        (
            book.blocked.get(node).cloned().unwrap_or_default(),
            book.waiting.get(node).cloned().unwrap_or_default(),
        )
    }
}

mod drive;
mod reschedule;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn hello() -> AgentHello {
        AgentHello::from(pb::Hello {
            facts: Some(pb::NodeFacts::default()),
            agent_version: "t".into(),
            last_applied_generation: 0,
            capabilities: vec![],
        })
    }

    async fn nodes_of(coord: &Coordinator, service: &str) -> Vec<String> {
        let desired = coord.desired.lock().await;
        let rec = desired
            .services
            .get(&(DEFAULT_ENV.to_string(), service.to_string()))
            .unwrap();
        rec.assignments
            .values()
            .map(|n| n.clone().unwrap_or_default())
            .collect()
    }

    #[tokio::test]
    async fn cordon_uncordon_and_rescheduling_of_a_lost_node() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(crate::store::SledStore::open(dir.path()).unwrap());
        let coord = Coordinator::load(store.clone(), Liveness::default(), CancellationToken::new())
            .await
            .unwrap();
        let a = coord.register("a", "fp-a", 0, hello(), None).await.unwrap();
        let _b = coord.register("b", "fp-b", 0, hello(), None).await.unwrap();

        // Cordoned `b` takes nothing new; uncordoned, the pending instance
        // of a scale-up goes there.
        assert!(!coord.cordon("b", true).await.unwrap().was_cordoned);
        let spec = "services:\n  web:\n    image: x:1\n    deploy:\n      replicas: 2\n      placement:\n        max_replicas_per_node: 1\n";
        coord.apply("s.yaml", spec, false, "t").await.unwrap();
        assert_eq!(nodes_of(&coord, "web").await, ["a", ""]);
        let nodes = coord.nodes().await;
        let b = nodes.nodes.iter().find(|n| n.name == "b").unwrap();
        assert!(b.cordoned && !b.draining);
        coord.cordon("b", false).await.unwrap();
        assert_eq!(nodes_of(&coord, "web").await, ["a", "b"]);
        // Durable: a reloaded coordinator knows the cordon.
        coord.cordon("b", true).await.unwrap();
        let again = Coordinator::load(store.clone(), Liveness::default(), CancellationToken::new())
            .await
            .unwrap();
        assert!(again.desired.lock().await.nodes["b"].cordoned);
        drop(again);
        coord.cordon("b", false).await.unwrap();
        assert!(matches!(
            coord.cordon("nope", true).await,
            Err(StateError::NodeNotFound(_))
        ));

        // `a` is lost: nothing moves before the delay...
        let spec = "services:\n  web:\n    image: x:1\n    deploy:\n      replicas: 2\n    x-convoy:\n      reschedule_after: 1m\n  pinned:\n    image: x:1\n    deploy:\n      placement:\n        constraints: [node.name == a]\n  stay:\n    image: x:1\n    deploy:\n      placement:\n        constraints: [node.name == a]\n    x-convoy:\n      reschedule_after: never\n";
        coord.apply("s.yaml", spec, false, "t").await.unwrap();
        coord.disconnect("a", a.conn_id);
        coord.reschedule_lost().await;
        assert_eq!(nodes_of(&coord, "web").await, ["a", "b"]);
        // ...then (the loss backdated past it) `web` moves to `b`; `pinned`
        // has no other node and stays, with a reason; `stay` opted out.
        coord
            .live()
            .lost
            .insert("a".into(), LostNode::since(now_unix_ms() - 121_000));
        let mut events = coord.events().subscribe();
        coord.reschedule_lost().await;
        assert_eq!(nodes_of(&coord, "web").await, ["b", "b"]);
        assert_eq!(nodes_of(&coord, "pinned").await, ["a"]);
        assert_eq!(nodes_of(&coord, "stay").await, ["a"]);
        let mut seen = Vec::new();
        while let Ok(ev) = events.try_recv() {
            if EventKind::InstanceRescheduled.is(&ev.kind) {
                seen.push(ev.message.clone());
            }
        }
        assert!(
            seen.iter()
                .any(|m| m
                    .starts_with("default/web/1 rescheduled from a to b: node a lost for 121 s")),
            "{seen:?}"
        );
        assert!(
            seen.iter()
                .any(|m| m.starts_with("default/pinned/1 cannot move")),
            "{seen:?}"
        );
        // Nothing more to do for `a` until the stuck one is tried again.
        let next = coord.live().lost["a"].next_check_unix_ms;
        assert!(next > now_unix_ms(), "{next}");

        // Removal moves even what opted out; what no node can take waits
        // pending rather than on a node that never comes back.
        coord.remove_node("a").await.unwrap();
        assert_eq!(nodes_of(&coord, "stay").await, [""]);
        assert_eq!(nodes_of(&coord, "pinned").await, [""]);
        let st = coord.status("pinned", "").await;
        assert!(
            st.services[0].instances[0]
                .reason
                .contains("placement constraints"),
            "{st:?}"
        );
    }

    #[tokio::test]
    async fn a_drain_moves_one_batch_at_a_time_and_resumes_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(crate::store::SledStore::open(dir.path()).unwrap());
        let coord = Coordinator::load(store.clone(), Liveness::default(), CancellationToken::new())
            .await
            .unwrap();
        let _a = coord.register("a", "fp-a", 0, hello(), None).await.unwrap();
        let spec = "services:\n  web:\n    image: x:1\n    deploy:\n      replicas: 3\n      update_config:\n        parallelism: 1\n  unit:\n    image: x:1\n    deploy:\n      mode: global\n";
        coord.apply("s.yaml", spec, false, "t").await.unwrap();
        // The first rollout is over (no agent reports here).
        for rec in coord.desired.lock().await.services.values_mut() {
            Arc::make_mut(rec).rollout = None;
        }
        let _b = coord.register("b", "fp-b", 0, hello(), None).await.unwrap();
        let r = coord.drain("a").await.unwrap();
        assert_eq!(r.instances, 4);
        coord.drive_drains().await;
        // One moved (nothing elsewhere to wait for); the global instance
        // on `a` is stopped, not moved.
        assert_eq!(nodes_of(&coord, "web").await, ["b", "a", "a"]);
        assert_eq!(nodes_of(&coord, "unit").await, ["b"]);
        // The moved one is not healthy (no agent reports): the drain waits.
        coord.drive_drains().await;
        assert_eq!(nodes_of(&coord, "web").await, ["b", "a", "a"]);
        let nodes = coord.nodes().await;
        let a = nodes.nodes.iter().find(|n| n.name == "a").unwrap();
        assert!(a.cordoned && a.draining);
        assert!(
            a.drain_waiting
                .iter()
                .any(|w| w.contains("waiting for default/web/1 on b to be healthy")),
            "{a:?}"
        );
        // A restarted coordinator goes on with the drain.
        drop(coord);
        let again = Coordinator::load(store, Liveness::default(), CancellationToken::new())
            .await
            .unwrap();
        assert!(again.drain_book().draining.contains("a"));
        // Uncordon ends it.
        assert!(again.cordon("a", false).await.unwrap().drain_stopped);
        assert!(again.drain_book().draining.is_empty());
    }
}

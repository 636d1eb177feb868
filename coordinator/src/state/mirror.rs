//! A standby's copy of desired state (issue 18), followed from the store's
//! watch (`crate::ha::mirror` runs it): each write of the leader's is
//! applied to the copy, and the plans of the nodes it touched are
//! recomputed with the code the leader uses, so a follower holds the
//! plans the leader sends. A follower never writes the shared store: its
//! coordinator's store is a private in-memory copy of the followed keys.

use super::*;
use crate::store::Change;

/// The keys a follower keeps: what desired state and plans are made of
/// (audit entries, tokens and revisions' history are not).
pub const FOLLOWED: [&str; 8] = [
    "services/",
    "nodes/",
    "enrolled/",
    "revoked/",
    "registries/",
    "secrets/",
    "notifiers/",
    "meta/",
];

/// Whether a follower keeps `key`.
pub fn followed(key: &str) -> bool {
    FOLLOWED.iter().any(|p| key.starts_with(p))
}

fn corrupt(key: &str, source: serde_json::Error) -> StateError {
    StateError::Store(StoreError::Corrupt {
        key: key.to_string(),
        source,
    })
}

impl Coordinator {
    /// Applies one write of the leader's (its followed keys) to this
    /// follower's copy, and hands out the plans it changed; returns how
    /// many. The plans take the generation the leader's write stored.
    pub async fn follow(&self, changes: &[Change]) -> Result<usize, StateError> {
        let changes: Vec<&Change> = changes.iter().filter(|c| followed(c.key())).collect();
        if changes.is_empty() {
            return Ok(0);
        }
        // The copy first: the record loaders below read it.
        let ops = changes
            .iter()
            .map(|c| match c {
                Change::Put(k, v) => Op::Put(k.clone(), v.clone()),
                Change::Delete(k) => Op::Delete(k.clone()),
            })
            .collect();
        self.store.apply(ops).await?;

        let mut txn = self.begin("follow").await;
        let mut nodes = HashSet::new();
        let (mut registries, mut secrets, mut notifiers, mut revoked, mut enrolled) =
            (false, false, false, false, false);
        let mut generation = None;
        {
            let staged = txn.stage();
            for change in &changes {
                let key = change.key();
                if let Some(rest) = key.strip_prefix("services/") {
                    match change {
                        Change::Put(_, v) => {
                            let rec: ServiceRecord =
                                serde_json::from_slice(v).map_err(|e| corrupt(key, e))?;
                            staged
                                .services
                                .insert((rec.env.clone(), rec.name.clone()), Arc::new(rec));
                        }
                        Change::Delete(_) => {
                            if let Some((env, name)) = rest.split_once('/') {
                                staged.services.remove(&(env.to_string(), name.to_string()));
                            }
                        }
                    }
                } else if let Some(name) = key.strip_prefix("nodes/") {
                    let nodes_map = Arc::make_mut(&mut staged.nodes);
                    match change {
                        Change::Put(_, v) => {
                            let rec: NodeRecord =
                                serde_json::from_slice(v).map_err(|e| corrupt(key, e))?;
                            nodes_map.insert(rec.name.clone(), rec);
                        }
                        Change::Delete(_) => {
                            nodes_map.remove(name);
                        }
                    }
                    nodes.insert(name.to_string());
                } else if key == PLAN_GENERATION_KEY {
                    if let Change::Put(_, v) = change {
                        generation =
                            Some(serde_json::from_slice::<u64>(v).map_err(|e| corrupt(key, e))?);
                    }
                } else {
                    registries |= key.starts_with("registries/");
                    secrets |= key.starts_with("secrets/");
                    notifiers |= key.starts_with("notifiers/");
                    revoked |= key.starts_with("revoked/");
                    enrolled |= key.starts_with("enrolled/");
                }
            }
        }
        // Rare writes: read whole from the copy, as a load does.
        if registries {
            txn.stage().registries = Arc::new(self.load_registries().await?);
        }
        if secrets {
            txn.stage().secrets = Arc::new(self.load_secrets().await?);
        }
        if notifiers {
            txn.stage().notifiers = Arc::new(self.load_notifiers().await?);
        }
        if enrolled {
            let mut map = BTreeMap::new();
            for (_, rec) in store::scan_json::<EnrollRecord>(&*self.store, "enrolled/").await? {
                map.insert(rec.node.clone(), rec);
            }
            txn.stage().enrolled = Arc::new(map);
        }
        if revoked {
            let set: HashSet<String> = store::scan_json::<RevokedRecord>(&*self.store, "revoked/")
                .await?
                .into_iter()
                .map(|(_, r)| r.fingerprint)
                .collect();
            *self.revoked.write().unwrap_or_else(|e| e.into_inner()) = set;
        }
        // A write of the plan counter alone is a leader's load: it handed
        // every plan out again under a new generation, and so does this
        // follower (the same plans, so agents change nothing).
        let reloaded = generation.is_some() && changes.len() == 1;
        if let Some(g) = generation {
            // Plans this write changed take the leader's generation (the
            // commit hands out the next one after the staged counter).
            let staged = txn.stage();
            staged.plan_generation = g.saturating_sub(1);
            if reloaded {
                Arc::make_mut(&mut staged.plans).clear();
            }
            txn.patch(move |d| d.plan_generation = d.plan_generation.max(g));
        }
        if reloaded {
            txn.replan_all();
        } else {
            txn.replan_nodes(nodes);
        }
        let committed = txn.commit().await?;
        if notifiers {
            self.publish_notifiers().await;
        }
        Ok(committed.plans)
    }

    /// The plan this coordinator holds for `node` (the one its sessions
    /// send), if any.
    pub fn current_plan(&self, node: &str) -> Option<Arc<pb::NodePlan>> {
        self.live()
            .plans
            .get(node)
            .and_then(|tx| tx.borrow().clone())
    }

    /// The nodes this coordinator holds a plan for.
    pub fn planned_nodes(&self) -> usize {
        self.live().plans.len()
    }
}

impl Coordinator {
    /// The plans this coordinator will hold for `node`, as they change (a
    /// standby's relayed session sends them to the agent).
    pub fn plan_receiver(&self, node: &str) -> watch::Receiver<Option<Arc<pb::NodePlan>>> {
        self.live()
            .plans
            .entry(node.to_string())
            .or_insert_with(|| watch::channel(None).0)
            .subscribe()
    }
}

//! Placement: which node runs each instance of a service. Existing
//! assignments stay where they are while their node still matches; new or
//! orphaned instances go to the connected matching node with the fewest
//! instances of the service. Pure functions, so they are unit-tested alone.

use std::collections::{BTreeMap, BTreeSet};

use convoy_api::host_paths;

use crate::spec::ServiceSpec;

/// A node as placement sees it.
#[derive(Clone)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub facts: &'a convoy_proto::NodeFacts,
    pub connected: bool,
}

/// Instance index (1-based) → node, `None` while no node can take it.
pub type Assignments = BTreeMap<u32, Option<String>>;

/// The host paths `spec`'s `volumes` bind-mount, with their index in
/// `volumes` (named volumes are not host access and are left out).
pub fn bind_sources(spec: &ServiceSpec) -> impl Iterator<Item = (usize, &str)> {
    // Revisions stored before `mounts` hold `volumes`; newer ones `mounts`.
    let legacy = spec
        .volumes
        .iter()
        .enumerate()
        .filter_map(|(i, v)| host_paths::bind_source(v).map(|s| (i, s)));
    let mounts = spec
        .mounts
        .iter()
        .enumerate()
        .filter_map(|(i, m)| m.bind_source().map(|s| (i, s)));
    legacy.chain(mounts)
}

/// Whether the node with `facts` lets `spec` have the host access it asks
/// for: every host path it bind-mounts is under one of the node's
/// `--allow-bind` roots, and every other kind of host access it asks for
/// (`privileged`, `cap_add`, ...) is in the node's `--allow-host-access`
/// (an admin's decisions, not a deployer's).
pub fn allows_host_access(spec: &ServiceSpec, facts: &convoy_proto::NodeFacts) -> bool {
    bind_sources(spec).all(|(_, source)| host_paths::allowed(&facts.allowed_bind_paths, source))
        && spec.host_access.allowed_by(&facts.allowed_host_access)
}

/// What a node has not set aside yet: CPUs in billionths, memory in bytes.
/// A node that does not report a figure has no limit on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub cpu_nanos: u64,
    pub memory_bytes: u64,
}

impl Capacity {
    /// What one instance of `spec` sets aside (`deploy.resources.reservations`).
    pub fn reserved_by(spec: &ServiceSpec) -> Self {
        Capacity {
            cpu_nanos: spec.resources.cpu_reservation_nanos,
            memory_bytes: spec.resources.memory_reservation_bytes,
        }
    }

    pub fn is_zero(&self) -> bool {
        self.cpu_nanos == 0 && self.memory_bytes == 0
    }

    fn fits(&self, need: &Capacity) -> bool {
        need.cpu_nanos <= self.cpu_nanos && need.memory_bytes <= self.memory_bytes
    }

    fn take(&mut self, need: &Capacity) {
        self.cpu_nanos = self.cpu_nanos.saturating_sub(need.cpu_nanos);
        self.memory_bytes = self.memory_bytes.saturating_sub(need.memory_bytes);
    }
}

/// Each node's free capacity: its facts less what instances on it reserve.
#[derive(Clone, Debug, Default)]
pub struct Free(BTreeMap<String, Capacity>);

impl Free {
    /// The nodes' capacity as their facts give it, nothing reserved yet.
    pub fn of(nodes: &[Candidate<'_>]) -> Self {
        let total = |n: u64| if n == 0 { u64::MAX } else { n };
        Free(
            nodes
                .iter()
                .map(|c| {
                    let capacity = Capacity {
                        cpu_nanos: total(u64::from(c.facts.cpus).saturating_mul(1_000_000_000)),
                        memory_bytes: total(c.facts.memory_bytes),
                    };
                    (c.name.to_string(), capacity)
                })
                .collect(),
        )
    }

    /// Sets aside what the instances of `spec` placed by `assignments` reserve.
    pub fn reserve(&mut self, spec: &ServiceSpec, assignments: &Assignments) {
        let need = Capacity::reserved_by(spec);
        if need.is_zero() {
            return;
        }
        for node in assignments.values().flatten() {
            if let Some(free) = self.0.get_mut(node) {
                free.take(&need);
            }
        }
    }

    pub fn get(&self, node: &str) -> Option<&Capacity> {
        self.0.get(node)
    }
}

/// Computes the assignments of `spec` given the current ones and the known
/// nodes. Deterministic for the same inputs.
pub fn place(spec: &ServiceSpec, current: &Assignments, nodes: &[Candidate<'_>]) -> Assignments {
    place_within(spec, current, nodes, None)
}

/// [`place`], where a new instance goes only to a node whose `free`
/// capacity (what other services left) holds its reservations; instances
/// already placed stay where they are.
pub fn place_within(
    spec: &ServiceSpec,
    current: &Assignments,
    nodes: &[Candidate<'_>],
    free: Option<&Free>,
) -> Assignments {
    let need = Capacity::reserved_by(spec);
    let mut room = free.filter(|_| !need.is_zero()).cloned();
    let matches = |c: &Candidate<'_>| {
        allows_host_access(spec, c.facts)
            && crate::spec::platform_matches(&spec.extras.platform, c.facts)
            && spec
                .constraints()
                .iter()
                .all(|k| k.matches(c.name, c.facts))
    };
    // Nodes that may keep an instance (known and matching) and nodes that
    // may take a new one (also connected).
    let keepable: BTreeSet<&str> = nodes
        .iter()
        .filter(|c| matches(c))
        .map(|c| c.name)
        .collect();
    let mut eligible: Vec<&str> = nodes
        .iter()
        .filter(|c| c.connected && matches(c))
        .map(|c| c.name)
        .collect();
    eligible.sort_unstable();

    if spec.is_global() {
        let fits = |node: &str| {
            room.as_ref()
                .is_none_or(|f| f.get(node).is_none_or(|c| c.fits(&need)))
        };
        let eligible: Vec<&str> = eligible.into_iter().filter(|n| fits(n)).collect();
        return place_global(current, &keepable, &eligible);
    }

    let replicas = spec.replicas() as usize;
    let cap = match spec.deploy.max_replicas_per_node {
        0 => usize::MAX,
        n => n as usize,
    };
    let mut spread = Spread::new(spec, nodes);
    // The instances kept are the current ones with the lowest numbers (a
    // blue-green rollout may have left them above `replicas`); new ones take
    // the lowest free numbers.
    let mut indexes: Vec<u32> = current.keys().copied().take(replicas).collect();
    let mut free = 1u32;
    while indexes.len() < replicas {
        if !current.contains_key(&free) {
            indexes.push(free);
        }
        free += 1;
    }
    indexes.sort_unstable();
    let mut out = Assignments::new();
    let mut load: BTreeMap<&str, usize> = eligible.iter().map(|n| (*n, 0)).collect();
    for index in &indexes {
        if let Some(Some(node)) = current.get(index) {
            let on_node = load.get(node.as_str()).copied().unwrap_or(0);
            if keepable.contains(node.as_str()) && on_node < cap {
                *load.entry(node.as_str()).or_default() += 1;
                spread.add(node);
                if let Some(c) = room.as_mut().and_then(|f| f.0.get_mut(node.as_str())) {
                    c.take(&need);
                }
                out.insert(*index, Some(node.clone()));
            }
        }
    }
    for index in indexes {
        if out.contains_key(&index) {
            continue;
        }
        let pick = eligible
            .iter()
            .filter(|n| {
                load.get(*n).copied().unwrap_or(0) < cap
                    && room
                        .as_ref()
                        .is_none_or(|f| f.get(n).is_none_or(|c| c.fits(&need)))
            })
            .min_by_key(|n| (spread.key(n), load.get(*n).copied().unwrap_or(0), **n))
            .copied();
        if let Some(node) = pick {
            *load.entry(node).or_default() += 1;
            spread.add(node);
            if let Some(c) = room.as_mut().and_then(|f| f.0.get_mut(node)) {
                c.take(&need);
            }
        }
        out.insert(index, pick.map(str::to_string));
    }
    out
}

/// `placement.preferences`: how many instances each value of each spread
/// label holds so far. A node without the label counts as one more value
/// (as Swarm does), so those nodes share one group.
struct Spread<'a> {
    keys: &'a [String],
    labels: BTreeMap<&'a str, &'a BTreeMap<String, String>>,
    counts: BTreeMap<(usize, Option<&'a str>), usize>,
}

impl<'a> Spread<'a> {
    fn new(spec: &'a ServiceSpec, nodes: &[Candidate<'a>]) -> Self {
        let keys = &spec.deploy.spread[..];
        let labels = if keys.is_empty() {
            BTreeMap::new()
        } else {
            nodes.iter().map(|c| (c.name, &c.facts.labels)).collect()
        };
        Spread {
            keys,
            labels,
            counts: BTreeMap::new(),
        }
    }

    fn group(&self, node: &str, k: usize) -> Option<&'a str> {
        let labels: &'a BTreeMap<String, String> = self.labels.get(node)?;
        labels.get(&self.keys[k]).map(String::as_str)
    }

    /// The instances already in `node`'s group of each preference, the
    /// first preference first: the smaller, the better the node.
    fn key(&self, node: &str) -> Vec<usize> {
        (0..self.keys.len())
            .map(|k| {
                let group = self.group(node, k);
                self.counts.get(&(k, group)).copied().unwrap_or(0)
            })
            .collect()
    }

    fn add(&mut self, node: &str) {
        for k in 0..self.keys.len() {
            let group = self.group(node, k);
            *self.counts.entry((k, group)).or_default() += 1;
        }
    }
}

fn place_global(
    current: &Assignments,
    keepable: &BTreeSet<&str>,
    eligible: &[&str],
) -> Assignments {
    let mut out = Assignments::new();
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    for (index, node) in current {
        if let Some(node) = node {
            if keepable.contains(node.as_str()) && placed.insert(node.as_str()) {
                out.insert(*index, Some(node.clone()));
            }
        }
    }
    let mut next = out.keys().next_back().copied().unwrap_or(0) + 1;
    for node in eligible {
        if placed.insert(node) {
            out.insert(next, Some(node.to_string()));
            next += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;

    fn svc(yaml: &str) -> ServiceSpec {
        let f = spec::parse("t.yaml", yaml).expect("valid spec");
        f.services.into_values().next().expect("one service")
    }

    fn facts(labels: &[(&str, &str)]) -> convoy_proto::NodeFacts {
        convoy_proto::NodeFacts {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn replicas_spread_evenly_over_connected_nodes() {
        let s = svc("services:\n  web:\n    image: x\n    deploy:\n      replicas: 3\n");
        let f = facts(&[]);
        let nodes = [
            Candidate {
                name: "b",
                facts: &f,
                connected: true,
            },
            Candidate {
                name: "a",
                facts: &f,
                connected: true,
            },
            Candidate {
                name: "c",
                facts: &f,
                connected: false,
            },
        ];
        let out = place(&s, &Assignments::new(), &nodes);
        let got: Vec<_> = out.values().map(|n| n.as_deref().unwrap()).collect();
        assert_eq!(got, ["a", "b", "a"]);
    }

    #[test]
    fn existing_assignments_stay_put_when_scaling() {
        let s = svc("services:\n  web:\n    image: x\n    deploy:\n      replicas: 2\n");
        let f = facts(&[]);
        let nodes = [
            Candidate {
                name: "a",
                facts: &f,
                connected: true,
            },
            Candidate {
                name: "b",
                facts: &f,
                connected: false,
            },
        ];
        let current: Assignments = [
            (1, Some("b".into())),
            (2, Some("b".into())),
            (3, Some("a".into())),
        ]
        .into_iter()
        .collect();
        let out = place(&s, &current, &nodes);
        // Index 3 is gone (scaled down); 1 and 2 keep their (disconnected) node.
        assert_eq!(
            out,
            [(1, Some("b".into())), (2, Some("b".into()))]
                .into_iter()
                .collect()
        );
    }

    #[test]
    fn instances_wait_pending_when_no_node_matches() {
        let s = svc(
            "services:\n  web:\n    image: x\n    deploy:\n      placement:\n        constraints: [\"node.labels.role == gpu\"]\n",
        );
        let f = facts(&[("role", "cpu")]);
        let nodes = [Candidate {
            name: "a",
            facts: &f,
            connected: true,
        }];
        let out = place(&s, &Assignments::new(), &nodes);
        assert_eq!(out, [(1, None)].into_iter().collect());
        let g = facts(&[("role", "gpu")]);
        let nodes = [
            Candidate {
                name: "a",
                facts: &f,
                connected: true,
            },
            Candidate {
                name: "g",
                facts: &g,
                connected: true,
            },
        ];
        let out = place(&s, &out, &nodes);
        assert_eq!(out, [(1, Some("g".into()))].into_iter().collect());
    }

    /// Issue 14: `placement.preferences: [{spread: node.labels.zone}]`
    /// spreads over the zones first, then over the nodes of each zone; a node
    /// without the label is a zone of its own.
    #[test]
    fn spread_preference_balances_label_values_before_nodes() {
        let s = svc(
            "services:\n  web:\n    image: x\n    deploy:\n      replicas: 4\n      placement:\n        preferences:\n          - spread: node.labels.zone\n",
        );
        let (a, b) = (facts(&[("zone", "a")]), facts(&[("zone", "b")]));
        let node = |name, facts| Candidate {
            name,
            facts,
            connected: true,
        };
        // Three nodes in zone a, one in zone b: plain spreading would put
        // 3 of 4 in zone a; the preference puts 2 in each zone.
        let nodes = [
            node("a1", &a),
            node("a2", &a),
            node("a3", &a),
            node("b1", &b),
        ];
        let out = place(&s, &Assignments::new(), &nodes);
        let zone_b = out.values().filter(|n| n.as_deref() == Some("b1")).count();
        assert_eq!(zone_b, 2, "{out:?}");
        let plain = svc("services:\n  web:\n    image: x\n    deploy:\n      replicas: 4\n");
        let out = place(&plain, &Assignments::new(), &nodes);
        let zone_b = out.values().filter(|n| n.as_deref() == Some("b1")).count();
        assert_eq!(zone_b, 1, "{out:?}");
        // Unlabelled nodes share one group.
        let none = facts(&[]);
        let nodes = [node("a1", &a), node("n1", &none), node("n2", &none)];
        let out = place(&s, &Assignments::new(), &nodes);
        let labelled = out.values().filter(|n| n.as_deref() == Some("a1")).count();
        assert_eq!(labelled, 2, "{out:?}");
    }

    /// Issue 14: `max_replicas_per_node` leaves the instances no node may
    /// take pending, and moves kept instances above the limit.
    #[test]
    fn max_replicas_per_node_caps_each_node() {
        let s = svc(
            "services:\n  web:\n    image: x\n    deploy:\n      replicas: 5\n      placement:\n        max_replicas_per_node: 2\n",
        );
        let f = facts(&[]);
        let node = |name| Candidate {
            name,
            facts: &f,
            connected: true,
        };
        let nodes = [node("a"), node("b")];
        let out = place(&s, &Assignments::new(), &nodes);
        let on = |n: &str| out.values().filter(|x| x.as_deref() == Some(n)).count();
        assert_eq!((on("a"), on("b")), (2, 2), "{out:?}");
        assert_eq!(out.values().filter(|n| n.is_none()).count(), 1, "{out:?}");
        // Three kept on `a` (placed before the limit): one moves to `b`.
        let current: Assignments = (1..=3).map(|i| (i, Some("a".to_string()))).collect();
        let s3 = svc(
            "services:\n  web:\n    image: x\n    deploy:\n      replicas: 3\n      placement:\n        max_replicas_per_node: 2\n",
        );
        let out = place(&s3, &current, &nodes);
        assert_eq!(out[&1], Some("a".to_string()));
        assert_eq!(out[&2], Some("a".to_string()));
        assert_eq!(out[&3], Some("b".to_string()));
    }

    fn binds(paths: &[&str]) -> convoy_proto::NodeFacts {
        convoy_proto::NodeFacts {
            allowed_bind_paths: paths.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        }
    }

    /// Issue 14: a service binding a host path goes only to nodes whose
    /// admin allowed it; a named volume goes anywhere.
    #[test]
    fn bind_mounts_of_host_paths_go_only_to_nodes_that_allow_them() {
        let s = svc(
            "services:\n  web:\n    image: x\n    volumes: [\"/srv/data/web:/data\", \"cache:/cache\"]\n    deploy:\n      replicas: 3\nvolumes:\n  cache: {}\n",
        );
        let (none, other, data, root) = (
            binds(&[]),
            binds(&["/srv/database"]),
            binds(&["/srv/data"]),
            binds(&["/"]),
        );
        let node = |name, facts| Candidate {
            name,
            facts,
            connected: true,
        };
        let nodes = [
            node("a", &none),
            node("b", &other),
            node("c", &data),
            node("d", &root),
        ];
        let out = place(&s, &Assignments::new(), &nodes);
        let got: Vec<_> = out.values().map(|n| n.as_deref().unwrap()).collect();
        assert_eq!(got, ["c", "d", "c"]);
        // No node allows it: pending.
        let out = place(&s, &Assignments::new(), &nodes[..2]);
        assert!(out.values().all(Option::is_none), "{out:?}");
        // An instance on a node that stops allowing it moves.
        let current: Assignments = [(1, Some("a".into()))].into_iter().collect();
        let s1 = svc("services:\n  web:\n    image: x\n    volumes: [\"/srv/data:/d\"]\n");
        let out = place(&s1, &current, &nodes);
        assert_eq!(out, [(1, Some("c".into()))].into_iter().collect());
        // Named volumes need no permission.
        let named = svc(
            "services:\n  web:\n    image: x\n    volumes: [\"cache:/cache\"]\nvolumes:\n  cache: {}\n",
        );
        let out = place(&named, &Assignments::new(), &nodes[..1]);
        assert_eq!(out, [(1, Some("a".into()))].into_iter().collect());
    }

    #[test]
    fn global_services_get_one_instance_per_matching_node() {
        let s = svc("services:\n  agent:\n    image: x\n    deploy:\n      mode: global\n");
        let f = facts(&[]);
        let nodes = [
            Candidate {
                name: "a",
                facts: &f,
                connected: true,
            },
            Candidate {
                name: "b",
                facts: &f,
                connected: true,
            },
        ];
        let out = place(&s, &Assignments::new(), &nodes);
        assert_eq!(
            out,
            [(1, Some("a".into())), (2, Some("b".into()))]
                .into_iter()
                .collect()
        );
        let nodes = [
            Candidate {
                name: "a",
                facts: &f,
                connected: true,
            },
            Candidate {
                name: "b",
                facts: &f,
                connected: true,
            },
            Candidate {
                name: "c",
                facts: &f,
                connected: true,
            },
        ];
        let again = place(&s, &out, &nodes);
        assert_eq!(again.get(&3), Some(&Some("c".to_string())));
        assert_eq!(again.get(&1), Some(&Some("a".to_string())));
    }
}

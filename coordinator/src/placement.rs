//! Placement: which node runs each instance of a service. Existing
//! assignments stay where they are while their node still matches; new or
//! orphaned instances go to the connected matching node with the fewest
//! instances of the service. Instances asking for GPUs get GPUs of their
//! node pinned by UUID, which no other instance gets unless both opted in
//! to sharing. Pure functions, so they are unit-tested alone.

use std::collections::{BTreeMap, BTreeSet};

use convoy_api::host_paths;

use crate::spec::{GpuDevices, GpuRequest, ServiceSpec};

/// A node as placement sees it.
#[derive(Clone)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub facts: &'a crate::facts::Facts,
    pub connected: bool,
    /// Cordoned (`convoy node cordon`, or draining): it keeps the
    /// instances it has but takes no new one.
    pub cordoned: bool,
}

/// Instance index (1-based) → node, `None` while no node can take it.
pub type Assignments = BTreeMap<u32, Option<String>>;

/// Instance index → the UUIDs of the GPUs of its node pinned to it; only
/// placed instances of services that ask for GPUs have an entry.
pub type GpuPins = BTreeMap<u32, Vec<String>>;

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
pub fn allows_host_access(spec: &ServiceSpec, facts: &crate::facts::Facts) -> bool {
    bind_sources(spec).all(|(_, source)| host_paths::allowed(&facts.allowed_bind_paths, source))
        && spec.host_access.allowed_by(&facts.allowed_host_access)
}

/// What a node has not set aside yet: CPUs in billionths, memory in bytes.
/// A node that does not report a figure has no limit on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capacity {
    pub cpu_nanos: u64,
    pub memory_bytes: u64,
}

impl Capacity {
    /// What one instance of `spec` sets aside (`deploy.resources.reservations`).
    pub fn reserved_by(spec: &ServiceSpec) -> Self {
        if spec.swarm.is_some() {
            // Swarm places the tasks and checks their reservations; the
            // one instance Convoy places is the service's driver.
            return Capacity::default();
        }
        Capacity {
            cpu_nanos: spec.resources.cpu_reservation_nanos,
            memory_bytes: spec.resources.memory_reservation_bytes,
        }
    }

    pub fn is_zero(&self) -> bool {
        self.cpu_nanos == 0 && self.memory_bytes == 0
    }

    /// Whether placing `spec` needs to know what nodes have free: it
    /// reserves CPUs or memory, or asks for GPUs.
    pub fn needs_room(spec: &ServiceSpec) -> bool {
        !Self::reserved_by(spec).is_zero()
            || (spec.resources.gpus.is_some() && spec.swarm.is_none())
    }

    fn fits(&self, need: &Capacity) -> bool {
        need.cpu_nanos <= self.cpu_nanos && need.memory_bytes <= self.memory_bytes
    }

    fn take(&mut self, need: &Capacity) {
        self.cpu_nanos = self.cpu_nanos.saturating_sub(need.cpu_nanos);
        self.memory_bytes = self.memory_bytes.saturating_sub(need.memory_bytes);
    }
}

/// One GPU of a node and who holds it.
#[derive(Clone, Debug)]
struct GpuSlot {
    index: u32,
    uuid: String,
    /// Pinned to an instance that does not share.
    exclusive: bool,
    /// How many instances that share have it pinned.
    shared: u32,
}

impl GpuSlot {
    /// Whether an instance (sharing or not) may have it pinned.
    fn usable(&self, shared: bool) -> bool {
        !self.exclusive && (shared || self.shared == 0)
    }

    /// `device_ids` names it (by index or UUID).
    fn named(&self, id: &str) -> bool {
        self.uuid == id || id.parse::<u32>().is_ok_and(|i| i == self.index)
    }
}

/// Each node's free capacity: its facts less what instances on it reserve,
/// and who holds each of its GPUs.
#[derive(Clone, Debug, Default)]
pub struct Free {
    capacity: BTreeMap<String, Capacity>,
    gpus: BTreeMap<String, Vec<GpuSlot>>,
}

impl Free {
    /// The nodes' capacity as their facts give it, nothing reserved yet.
    pub fn of(nodes: &[Candidate<'_>]) -> Self {
        let total = |n: u64| if n == 0 { u64::MAX } else { n };
        let capacity = nodes
            .iter()
            .map(|c| {
                let capacity = Capacity {
                    cpu_nanos: total(u64::from(c.facts.cpus).saturating_mul(1_000_000_000)),
                    memory_bytes: total(c.facts.memory_bytes),
                };
                (c.name.to_string(), capacity)
            })
            .collect();
        let gpus = nodes
            .iter()
            .filter(|c| !c.facts.gpus.is_empty())
            .map(|c| {
                let mut slots: Vec<GpuSlot> = c
                    .facts
                    .gpus
                    .iter()
                    .map(|g| GpuSlot {
                        index: g.index,
                        uuid: g.uuid.clone(),
                        exclusive: false,
                        shared: 0,
                    })
                    .collect();
                slots.sort_by_key(|s| s.index);
                (c.name.to_string(), slots)
            })
            .collect();
        Free { capacity, gpus }
    }

    /// Sets aside what the instances of `spec` placed by `assignments`
    /// reserve, and the GPUs `pins` gives them.
    pub fn reserve(&mut self, spec: &ServiceSpec, assignments: &Assignments, pins: &GpuPins) {
        let need = Capacity::reserved_by(spec);
        if !need.is_zero() {
            for node in assignments.values().flatten() {
                if let Some(free) = self.capacity.get_mut(node) {
                    free.take(&need);
                }
            }
        }
        let shared = spec.resources.gpus.as_ref().is_some_and(|g| g.shared);
        for (index, uuids) in pins {
            if let Some(Some(node)) = assignments.get(index) {
                self.take_gpus(node, uuids, shared);
            }
        }
    }

    pub fn get(&self, node: &str) -> Option<&Capacity> {
        self.capacity.get(node)
    }

    /// How many of `node`'s GPUs an instance that shares (or not) may have.
    pub fn gpus_free(&self, node: &str, shared: bool) -> usize {
        self.gpus
            .get(node)
            .map_or(0, |slots| slots.iter().filter(|s| s.usable(shared)).count())
    }

    /// How many GPUs `node` has.
    pub fn gpus_total(&self, node: &str) -> usize {
        self.gpus.get(node).map_or(0, Vec::len)
    }

    /// The GPUs of `node` that `request` would get (those in `prefer`
    /// first, then the least shared, then by index), if it has enough free.
    pub fn pick_gpus(
        &self,
        node: &str,
        request: &GpuRequest,
        prefer: &[String],
    ) -> Option<Vec<String>> {
        let slots = self.gpus.get(node)?;
        let usable = |s: &&GpuSlot| s.usable(request.shared);
        match &request.devices {
            GpuDevices::Count(n) => {
                let mut free: Vec<&GpuSlot> = slots.iter().filter(usable).collect();
                free.sort_by_key(|s| (!prefer.contains(&s.uuid), s.shared, s.index));
                (free.len() >= *n as usize)
                    .then(|| free[..*n as usize].iter().map(|s| s.uuid.clone()).collect())
            }
            GpuDevices::All => (!slots.is_empty()
                && slots.iter().all(|s| s.usable(request.shared)))
            .then(|| slots.iter().map(|s| s.uuid.clone()).collect()),
            GpuDevices::Ids(ids) => ids
                .iter()
                .map(|id| {
                    slots
                        .iter()
                        .find(|s| s.named(id))
                        .filter(usable)
                        .map(|s| s.uuid.clone())
                })
                .collect(),
        }
    }

    /// Whether `pins` (an instance's GPUs on `node`) still answer `request`:
    /// as many as it asks, the ones it names, none held by another instance
    /// it may not share with. A pinned GPU the node no longer reports
    /// stays pinned (placed instances never move).
    fn pins_hold(&self, node: &str, request: &GpuRequest, pins: &[String]) -> bool {
        let slots = self.gpus.get(node).map(Vec::as_slice).unwrap_or(&[]);
        let shape = match &request.devices {
            GpuDevices::Count(n) => pins.len() == *n as usize,
            GpuDevices::All => !pins.is_empty(),
            GpuDevices::Ids(ids) => {
                pins.len() == ids.len()
                    && ids.iter().all(|id| {
                        pins.contains(id)
                            || slots.iter().any(|s| s.named(id) && pins.contains(&s.uuid))
                    })
            }
        };
        shape
            && pins.iter().all(|uuid| {
                slots
                    .iter()
                    .find(|s| &s.uuid == uuid)
                    .is_none_or(|s| s.usable(request.shared))
            })
    }

    fn take_gpus(&mut self, node: &str, uuids: &[String], shared: bool) {
        let Some(slots) = self.gpus.get_mut(node) else {
            return;
        };
        for slot in slots.iter_mut().filter(|s| uuids.contains(&s.uuid)) {
            if shared {
                slot.shared += 1;
            } else {
                slot.exclusive = true;
            }
        }
    }
}

/// Computes the assignments of `spec` given the current ones and the known
/// nodes. Deterministic for the same inputs.
pub fn place(spec: &ServiceSpec, current: &Assignments, nodes: &[Candidate<'_>]) -> Assignments {
    place_within(spec, current, &GpuPins::new(), nodes, None).0
}

/// [`place`], where a new instance goes only to a node whose `free`
/// capacity (what other services left) holds its reservations and has the
/// GPUs it asks for; instances already placed stay where they are. Also
/// pins GPUs to each placed instance of a service that asks for them:
/// those in `current_gpus` while they still answer the request (no
/// reshuffle on every apply), else free ones of its node.
pub fn place_within(
    spec: &ServiceSpec,
    current: &Assignments,
    current_gpus: &GpuPins,
    nodes: &[Candidate<'_>],
    free: Option<&Free>,
) -> (Assignments, GpuPins) {
    // A Swarm service is one instance: the service itself, on the node
    // whose agent drives its cluster.
    if let Some(cluster) = spec.swarm_cluster() {
        let current = current.get(&1).cloned().flatten();
        let driver = crate::swarm::driver::pick(cluster, current.as_deref(), nodes);
        return (Assignments::from([(1, driver)]), GpuPins::new());
    }
    let need = Capacity::reserved_by(spec);
    let gpu = spec.resources.gpus.as_ref();
    let mut room = match (free, gpu) {
        (Some(f), _) if Capacity::needs_room(spec) => Some(f.clone()),
        // GPUs are counted even when the caller counts nothing else: two
        // instances of the service must not get one GPU.
        (None, Some(_)) => Some(Free::of(nodes)),
        _ => None,
    };
    let matches = |c: &Candidate<'_>| {
        allows_host_access(spec, c.facts)
            && crate::spec::platform_matches(&spec.extras.platform, c.facts)
            && spec
                .constraints()
                .iter()
                .all(|k| k.matches(c.name, c.facts))
    };
    // Nodes that may keep an instance (known and matching) and nodes that
    // may take a new one (also connected, and not cordoned).
    let keepable: BTreeSet<&str> = nodes
        .iter()
        .filter(|c| matches(c))
        .map(|c| c.name)
        .collect();
    let mut eligible: Vec<&str> = nodes
        .iter()
        .filter(|c| c.connected && !c.cordoned && matches(c))
        .map(|c| c.name)
        .collect();
    eligible.sort_unstable();
    let fits = |room: &Option<Free>, node: &str| {
        room.as_ref().is_none_or(|f| {
            f.get(node).is_none_or(|c| c.fits(&need))
                && gpu.is_none_or(|g| f.pick_gpus(node, g, &[]).is_some())
        })
    };
    let mut pins = GpuPins::new();

    if spec.is_global() {
        let eligible: Vec<&str> = eligible.into_iter().filter(|n| fits(&room, n)).collect();
        let mut out = place_global(current, &keepable, &eligible);
        if let (Some(g), Some(room)) = (gpu, room.as_mut()) {
            pin_all(g, &mut out, current, current_gpus, room, &mut pins);
        }
        return (out, pins);
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
    let mut next_free = 1u32;
    while indexes.len() < replicas {
        if !current.contains_key(&next_free) {
            indexes.push(next_free);
        }
        next_free += 1;
    }
    indexes.sort_unstable();
    let mut out = Assignments::new();
    let mut load: BTreeMap<&str, usize> = eligible.iter().map(|n| (*n, 0)).collect();
    // Kept instances hold their pinned GPUs before any is handed out.
    if let (Some(g), Some(room)) = (gpu, room.as_mut()) {
        for index in &indexes {
            if let (Some(Some(node)), Some(held)) = (current.get(index), current_gpus.get(index)) {
                if keepable.contains(node.as_str()) && room.pins_hold(node, g, held) {
                    room.take_gpus(node, held, g.shared);
                    pins.insert(*index, held.clone());
                }
            }
        }
    }
    for index in &indexes {
        if let Some(Some(node)) = current.get(index) {
            let on_node = load.get(node.as_str()).copied().unwrap_or(0);
            if keepable.contains(node.as_str()) && on_node < cap {
                if let (Some(g), Some(room)) = (gpu, room.as_mut()) {
                    if !pins.contains_key(index) {
                        // Its GPUs no longer answer the request (a new
                        // count): others of its node, or it is placed anew.
                        let held = current_gpus.get(index).map(Vec::as_slice).unwrap_or(&[]);
                        let Some(got) = room.pick_gpus(node, g, held) else {
                            continue;
                        };
                        room.take_gpus(node, &got, g.shared);
                        pins.insert(*index, got);
                    }
                }
                *load.entry(node.as_str()).or_default() += 1;
                spread.add(node);
                if let Some(c) = room
                    .as_mut()
                    .and_then(|f| f.capacity.get_mut(node.as_str()))
                {
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
        pins.remove(&index);
        let pick = eligible
            .iter()
            .filter(|n| load.get(*n).copied().unwrap_or(0) < cap && fits(&room, n))
            .min_by_key(|n| (spread.key(n), load.get(*n).copied().unwrap_or(0), **n))
            .copied();
        if let Some(node) = pick {
            *load.entry(node).or_default() += 1;
            spread.add(node);
            if let Some(room) = room.as_mut() {
                if let Some(c) = room.capacity.get_mut(node) {
                    c.take(&need);
                }
                if let Some(got) = gpu.and_then(|g| room.pick_gpus(node, g, &[])) {
                    room.take_gpus(node, &got, gpu.is_some_and(|g| g.shared));
                    pins.insert(index, got);
                }
            }
        }
        out.insert(index, pick.map(str::to_string));
    }
    (out, pins)
}

/// What [`move_off`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    pub assignments: Assignments,
    pub gpus: GpuPins,
    /// (instance index, from node, to node), lowest index first.
    pub moved: Vec<(u32, String, String)>,
    /// Instances on a leaving node that no other node can take now: they
    /// stay where they are.
    pub stuck: Vec<u32>,
}

/// Moves at most `limit` instances of `spec` placed on one of the
/// `leaving` nodes (lost past the service's reschedule delay, removed, or
/// draining) to other eligible nodes, lowest index first. Each keeps its
/// index; every other instance stays as it is. An instance no other node
/// can take (constraints, room) stays on its node and is `stuck`.
pub fn move_off(
    spec: &ServiceSpec,
    current: &Assignments,
    current_gpus: &GpuPins,
    nodes: &[Candidate<'_>],
    free: Option<&Free>,
    leaving: &BTreeSet<&str>,
    limit: usize,
) -> Moved {
    let mut out = Moved {
        assignments: current.clone(),
        gpus: current_gpus.clone(),
        ..Moved::default()
    };
    let on_leaving: Vec<(u32, &str)> = current
        .iter()
        .filter_map(|(i, n)| n.as_deref().map(|n| (*i, n)))
        .filter(|(_, n)| leaving.contains(n))
        .collect();
    if on_leaving.is_empty() {
        return out;
    }
    let staying: Vec<Candidate<'_>> = nodes
        .iter()
        .filter(|c| !leaving.contains(c.name))
        .cloned()
        .collect();
    let (placed, pins) = place_within(spec, current, current_gpus, &staying, free);
    for (index, from) in on_leaving {
        match placed.get(&index).cloned().flatten() {
            Some(to) if out.moved.len() < limit => {
                out.assignments.insert(index, Some(to.clone()));
                match pins.get(&index) {
                    Some(p) => {
                        out.gpus.insert(index, p.clone());
                    }
                    None => {
                        out.gpus.remove(&index);
                    }
                }
                out.moved.push((index, from.to_string(), to));
            }
            Some(_) => {}
            None => out.stuck.push(index),
        }
    }
    out
}

/// Pins GPUs to each instance of a global service in `out`: kept pins
/// first, then free GPUs of each node; an instance whose node has none
/// left is dropped (it waits for room, as a new one would).
fn pin_all(
    g: &GpuRequest,
    out: &mut Assignments,
    current: &Assignments,
    current_gpus: &GpuPins,
    room: &mut Free,
    pins: &mut GpuPins,
) {
    for (index, node) in out.iter() {
        let (Some(node), Some(held)) = (node, current_gpus.get(index)) else {
            continue;
        };
        if current.get(index) == Some(&Some(node.clone())) && room.pins_hold(node, g, held) {
            room.take_gpus(node, held, g.shared);
            pins.insert(*index, held.clone());
        }
    }
    let mut dropped = Vec::new();
    for (index, node) in out.iter() {
        let Some(node) = node else { continue };
        if pins.contains_key(index) {
            continue;
        }
        match room.pick_gpus(node, g, &[]) {
            Some(got) => {
                room.take_gpus(node, &got, g.shared);
                pins.insert(*index, got);
            }
            None => dropped.push(*index),
        }
    }
    for index in dropped {
        out.remove(&index);
    }
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
    use crate::facts::Facts;
    use crate::spec;

    fn svc(yaml: &str) -> ServiceSpec {
        let f = spec::parse("t.yaml", yaml).expect("valid spec");
        f.services.into_values().next().expect("one service")
    }

    fn facts(labels: &[(&str, &str)]) -> Facts {
        Facts::from(convoy_proto::NodeFacts {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        })
    }

    fn node<'a>(name: &'a str, facts: &'a Facts, connected: bool, cordoned: bool) -> Candidate<'a> {
        Candidate {
            name,
            facts,
            connected,
            cordoned,
        }
    }

    #[test]
    fn a_cordoned_node_keeps_its_instances_but_takes_no_new_one() {
        let f = facts(&[]);
        let s = svc("services:\n  web:\n    image: x\n    deploy:\n      replicas: 4\n");
        let current = Assignments::from([(1, Some("a".to_string())), (2, Some("b".to_string()))]);
        let nodes = [node("a", &f, true, true), node("b", &f, true, false)];
        let out = place(&s, &current, &nodes);
        // Instance 1 stays on cordoned `a`; the new ones all go to `b`.
        assert_eq!(out.get(&1), Some(&Some("a".to_string())));
        assert_eq!(
            out.values().filter(|n| n.as_deref() == Some("b")).count(),
            3,
            "{out:?}"
        );
        // Only cordoned nodes: a new instance waits.
        let nodes = [node("a", &f, true, true)];
        let out = place(&s, &Assignments::new(), &nodes);
        assert!(out.values().all(Option::is_none), "{out:?}");
        // Uncordoned, it takes them.
        let nodes = [node("a", &f, true, false)];
        let out = place(&s, &Assignments::new(), &nodes);
        assert!(out.values().all(|n| n.as_deref() == Some("a")), "{out:?}");
        // A global service gets no instance on a cordoned node either.
        let g = svc("services:\n  web:\n    image: x\n    deploy:\n      mode: global\n");
        let nodes = [node("a", &f, true, true), node("b", &f, true, false)];
        let out = place(&g, &Assignments::new(), &nodes);
        assert_eq!(out, Assignments::from([(1, Some("b".to_string()))]));
    }

    #[test]
    fn instances_of_a_leaving_node_move_to_others_and_wait_when_none_can_take_them() {
        let f = facts(&[]);
        let s = svc("services:\n  web:\n    image: x\n    deploy:\n      replicas: 3\n");
        let current = Assignments::from([
            (1, Some("a".to_string())),
            (2, Some("b".to_string())),
            (3, Some("a".to_string())),
        ]);
        // `a` was lost past the delay: not connected.
        let nodes = [
            node("a", &f, false, false),
            node("b", &f, true, false),
            node("c", &f, true, false),
        ];
        let leaving = BTreeSet::from(["a"]);
        let m = move_off(
            &s,
            &current,
            &GpuPins::new(),
            &nodes,
            None,
            &leaving,
            usize::MAX,
        );
        assert_eq!(m.stuck, Vec::<u32>::new());
        assert_eq!(m.assignments.get(&2), Some(&Some("b".to_string())));
        let moved: Vec<u32> = m.moved.iter().map(|(i, _, _)| *i).collect();
        assert_eq!(moved, [1, 3]);
        assert!(m
            .assignments
            .values()
            .all(|n| n.as_deref().is_some_and(|n| n != "a")));
        // Spread: `c` had none, so it takes one of them at least.
        assert!(m.assignments.values().any(|n| n.as_deref() == Some("c")));

        // One at a time (a drain's parallelism): the lowest index first.
        let m = move_off(&s, &current, &GpuPins::new(), &nodes, None, &leaving, 1);
        assert_eq!(m.moved.len(), 1);
        assert_eq!(m.moved[0].0, 1);
        assert_eq!(m.assignments.get(&3), Some(&Some("a".to_string())));

        // Pinned to `a` by a constraint: nothing can take them; they stay.
        let pinned = svc("services:\n  web:\n    image: x\n    deploy:\n      replicas: 3\n      placement:\n        constraints: [node.hostname == a]\n");
        let m = move_off(
            &pinned,
            &current,
            &GpuPins::new(),
            &nodes,
            None,
            &leaving,
            usize::MAX,
        );
        assert!(m.moved.is_empty());
        assert_eq!(m.stuck, [1, 3]);
        assert_eq!(m.assignments, current);

        // A cordoned node takes none of them.
        let nodes = [
            node("a", &f, false, false),
            node("b", &f, true, true),
            node("c", &f, true, true),
        ];
        let m = move_off(
            &s,
            &current,
            &GpuPins::new(),
            &nodes,
            None,
            &leaving,
            usize::MAX,
        );
        assert_eq!(m.stuck, [1, 3]);
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
                cordoned: false,
            },
            Candidate {
                name: "a",
                facts: &f,
                connected: true,
                cordoned: false,
            },
            Candidate {
                name: "c",
                facts: &f,
                connected: false,
                cordoned: false,
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
                cordoned: false,
            },
            Candidate {
                name: "b",
                facts: &f,
                connected: false,
                cordoned: false,
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
            cordoned: false,
        }];
        let out = place(&s, &Assignments::new(), &nodes);
        assert_eq!(out, [(1, None)].into_iter().collect());
        let g = facts(&[("role", "gpu")]);
        let nodes = [
            Candidate {
                name: "a",
                facts: &f,
                connected: true,
                cordoned: false,
            },
            Candidate {
                name: "g",
                facts: &g,
                connected: true,
                cordoned: false,
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
            cordoned: false,
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
            cordoned: false,
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

    fn binds(paths: &[&str]) -> Facts {
        Facts::from(convoy_proto::NodeFacts {
            allowed_bind_paths: paths.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        })
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
            cordoned: false,
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

    fn gpu_facts(uuids: &[&str]) -> Facts {
        Facts::from(convoy_proto::NodeFacts {
            gpus: uuids
                .iter()
                .enumerate()
                .map(|(i, u)| convoy_proto::GpuDevice {
                    index: i as u32,
                    uuid: u.to_string(),
                    name: "NVIDIA H100 80GB HBM3".into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    fn gpu_svc(replicas: u32, gpus: &str, extra: &str) -> ServiceSpec {
        svc(&format!(
            "services:\n  web:\n    image: x\n    gpus: {gpus}\n{extra}    deploy:\n      replicas: {replicas}\n"
        ))
    }

    fn used(pins: &GpuPins) -> Vec<&str> {
        let mut all: Vec<&str> = pins.values().flatten().map(String::as_str).collect();
        all.sort_unstable();
        all
    }

    /// Issue 16: each instance gets its own GPUs, pinned by UUID; one that
    /// no node has GPUs left for waits; a node without GPUs takes none.
    #[test]
    fn instances_get_gpus_of_their_node_and_never_share_one() {
        let (g, plain) = (gpu_facts(&["GPU-a", "GPU-b"]), facts(&[]));
        let nodes = [
            Candidate {
                name: "cpu",
                facts: &plain,
                connected: true,
                cordoned: false,
            },
            Candidate {
                name: "gpu",
                facts: &g,
                connected: true,
                cordoned: false,
            },
        ];
        let s = gpu_svc(3, "1", "");
        let (out, pins) = place_within(&s, &Assignments::new(), &GpuPins::new(), &nodes, None);
        assert_eq!(out[&1].as_deref(), Some("gpu"));
        assert_eq!(out[&2].as_deref(), Some("gpu"));
        assert_eq!(out[&3], None, "no GPU left: pending, not on `cpu`");
        assert_eq!(used(&pins), ["GPU-a", "GPU-b"]);
        // Two GPUs each: one instance fits.
        let (out, pins) = place_within(
            &gpu_svc(2, "2", ""),
            &Assignments::new(),
            &GpuPins::new(),
            &nodes,
            None,
        );
        assert_eq!(
            (out[&1].as_deref(), out[&2].as_deref()),
            (Some("gpu"), None)
        );
        assert_eq!(pins[&1], ["GPU-a", "GPU-b"]);
        // `all`: every GPU of the node, exclusively.
        let (out, pins) = place_within(
            &gpu_svc(2, "all", ""),
            &Assignments::new(),
            &GpuPins::new(),
            &nodes,
            None,
        );
        assert_eq!(
            (out[&1].as_deref(), out[&2].as_deref()),
            (Some("gpu"), None)
        );
        assert_eq!(pins[&1], ["GPU-a", "GPU-b"]);
    }

    /// Issue 16: what other services hold counts; sharing needs both sides
    /// to opt in.
    #[test]
    fn gpus_are_shared_only_between_services_that_opt_in() {
        let g = gpu_facts(&["GPU-a"]);
        let nodes = [Candidate {
            name: "gpu",
            facts: &g,
            connected: true,
            cordoned: false,
        }];
        let sharing = "    x-convoy:\n      gpu_sharing: true\n";
        let held: Assignments = [(1, Some("gpu".to_string()))].into_iter().collect();
        let held_pins: GpuPins = [(1, vec!["GPU-a".to_string()])].into_iter().collect();
        let free_after = |other: &ServiceSpec| {
            let mut f = Free::of(&nodes);
            f.reserve(other, &held, &held_pins);
            f
        };
        let exclusive = gpu_svc(1, "1", "");
        let shared = gpu_svc(1, "1", sharing);
        // Held exclusively: nobody gets it.
        for s in [&exclusive, &shared] {
            let f = free_after(&exclusive);
            let (out, _) = place_within(s, &Assignments::new(), &GpuPins::new(), &nodes, Some(&f));
            assert_eq!(out[&1], None);
        }
        // Held by a sharing service: only another sharing one gets it.
        let f = free_after(&shared);
        let (out, _) = place_within(
            &exclusive,
            &Assignments::new(),
            &GpuPins::new(),
            &nodes,
            Some(&f),
        );
        assert_eq!(out[&1], None);
        let (out, pins) = place_within(
            &shared,
            &Assignments::new(),
            &GpuPins::new(),
            &nodes,
            Some(&f),
        );
        assert_eq!(out[&1].as_deref(), Some("gpu"));
        assert_eq!(pins[&1], ["GPU-a"]);
    }

    /// Issue 16: a new revision with the same request keeps each
    /// instance's GPUs; a larger count keeps the old ones and adds; GPUs
    /// that vanish from the node's facts stay pinned (placed instances
    /// never move).
    #[test]
    fn pinned_gpus_stay_across_revisions() {
        let g = gpu_facts(&["GPU-a", "GPU-b", "GPU-c", "GPU-d"]);
        let nodes = [Candidate {
            name: "gpu",
            facts: &g,
            connected: true,
            cordoned: false,
        }];
        let current: Assignments = [(1, Some("gpu".to_string()))].into_iter().collect();
        let pinned: GpuPins = [(1, vec!["GPU-c".to_string()])].into_iter().collect();
        let v2 = svc("services:\n  web:\n    image: y\n    gpus: 1\n");
        let (out, pins) = place_within(&v2, &current, &pinned, &nodes, None);
        assert_eq!(out, current);
        assert_eq!(pins, pinned);
        let (_, pins) = place_within(&gpu_svc(1, "2", ""), &current, &pinned, &nodes, None);
        assert_eq!(pins[&1], ["GPU-c", "GPU-a"]);
        // A scale-up leaves the first instance's GPU alone.
        let (_, pins) = place_within(&gpu_svc(2, "1", ""), &current, &pinned, &nodes, None);
        assert_eq!(
            (pins[&1].as_slice(), pins[&2].as_slice()),
            (&["GPU-c".to_string()][..], &["GPU-a".to_string()][..])
        );
        let gone = gpu_facts(&[]);
        let nodes = [Candidate {
            name: "gpu",
            facts: &gone,
            connected: true,
            cordoned: false,
        }];
        let (out, pins) = place_within(&v2, &current, &pinned, &nodes, None);
        assert_eq!((out, pins), (current, pinned));
    }

    /// Issue 16: `device_ids` pins the GPUs it names (index or UUID) on a
    /// node that has them free.
    #[test]
    fn device_ids_pin_the_named_gpus() {
        let (a, b) = (gpu_facts(&["GPU-a0"]), gpu_facts(&["GPU-b0", "GPU-b1"]));
        let nodes = [
            Candidate {
                name: "a",
                facts: &a,
                connected: true,
                cordoned: false,
            },
            Candidate {
                name: "b",
                facts: &b,
                connected: true,
                cordoned: false,
            },
        ];
        let ids = |list: &str| {
            svc(&format!(
                "services:\n  web:\n    image: x\n    deploy:\n      resources:\n        reservations:\n          devices:\n            - {{device_ids: [{list}], capabilities: [gpu]}}\n"
            ))
        };
        let (out, pins) = place_within(
            &ids("'1'"),
            &Assignments::new(),
            &GpuPins::new(),
            &nodes,
            None,
        );
        assert_eq!(out[&1].as_deref(), Some("b"));
        assert_eq!(pins[&1], ["GPU-b1"]);
        let (out, pins) = place_within(
            &ids("GPU-a0"),
            &Assignments::new(),
            &GpuPins::new(),
            &nodes,
            None,
        );
        assert_eq!(out[&1].as_deref(), Some("a"));
        assert_eq!(pins[&1], ["GPU-a0"]);
        let (out, _) = place_within(
            &ids("GPU-zz"),
            &Assignments::new(),
            &GpuPins::new(),
            &nodes,
            None,
        );
        assert_eq!(out[&1], None);
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
                cordoned: false,
            },
            Candidate {
                name: "b",
                facts: &f,
                connected: true,
                cordoned: false,
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
                cordoned: false,
            },
            Candidate {
                name: "b",
                facts: &f,
                connected: true,
                cordoned: false,
            },
            Candidate {
                name: "c",
                facts: &f,
                connected: true,
                cordoned: false,
            },
        ];
        let again = place(&s, &out, &nodes);
        assert_eq!(again.get(&3), Some(&Some("c".to_string())));
        assert_eq!(again.get(&1), Some(&Some("a".to_string())));
    }
}

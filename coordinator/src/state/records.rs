//! What desired state is made of, as stored: service, revision, node,
//! revocation and enrolment records, their store keys, and node facts.

use super::*;

pub use crate::facts::{Facts, Gpu, MAX_GPUS};

/// A service's current state, stored at `services/ENV/NAME`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub env: String,
    pub name: String,
    /// The current (latest) revision.
    pub revision: u64,
    pub spec: ServiceSpec,
    /// Deleted services keep their record so revision numbers never repeat.
    pub deleted: bool,
    pub assignments: Assignments,
    /// The GPUs pinned to each placed instance, by UUID; absent from
    /// records of services without GPUs (and of those stored before).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gpus: placement::GpuPins,
    pub created_unix_ms: i64,
    pub updated_unix_ms: i64,
    /// The current or last rollout; while active, instances it has not
    /// switched yet run its `from_spec`.
    #[serde(default)]
    pub rollout: Option<Rollout>,
}

/// A revision, stored at `revisions/ENV/NAME/REV`; only its outcome changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevisionRecord {
    pub revision: u64,
    pub spec: ServiceSpec,
    pub created_unix_ms: i64,
    pub created_by: String,
    pub source: String,
    /// "", "succeeded", "failed: REASON", "rolled back", "superseded".
    #[serde(default)]
    pub outcome: String,
}

/// What the coordinator remembers of a node, stored at `nodes/NAME`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    /// Shared: placement reads every node's facts on each commit that
    /// places, and a record is copied on write.
    pub facts: Arc<Facts>,
    pub agent_version: String,
    pub first_seen_unix_ms: i64,
    pub last_seen_unix_ms: i64,
    /// Fingerprints (hex SHA-256) of the certificates the node connected
    /// with, newest last: what `node remove` revokes.
    #[serde(default)]
    pub certificates: Vec<String>,
    /// When the node was removed (0: it was not). A removed node comes back
    /// only with a new certificate.
    #[serde(default)]
    pub removed_unix_ms: i64,
    /// Expiry of the newest certificate the node connected or renewed with.
    #[serde(default)]
    pub certificate_expires_unix_ms: i64,
    /// `convoy node cordon` (or a drain): the node takes no new instance;
    /// what runs there stays. Absent from records of nodes never cordoned.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cordoned: bool,
    /// `convoy node drain` is moving the node's instances away; cleared
    /// when none is left (the node stays cordoned) or on uncordon.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
    /// A drain finished (nothing movable left); cleared on uncordon or a
    /// new drain.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drained: bool,
}

/// A revoked certificate, stored at `revoked/FINGERPRINT`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokedRecord {
    pub fingerprint: String,
    pub node: String,
    pub revoked_unix_ms: i64,
}

/// A node enrolled with a join token, stored at `enrolled/NODE`. The
/// token's labels are the node's, whatever its agent reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrollRecord {
    pub node: String,
    pub token_id: String,
    pub labels: BTreeMap<String, String>,
    pub enrolled_unix_ms: i64,
}

/// How many certificate fingerprints a node record keeps.
pub(super) const CERTIFICATES_KEPT: usize = 8;

/// A node's plan bookkeeping, in memory. (Until 2026-11 it was stored at
/// `plans/NODE`, one write per node per change; such records are read once
/// for their generations and removed.)
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanRecord {
    pub generation: u64,
    pub hash: String,
}

pub(super) fn service_key(env: &str, name: &str) -> String {
    format!("services/{env}/{name}")
}

pub(super) fn revision_key(env: &str, name: &str, rev: u64) -> String {
    format!("revisions/{env}/{name}/{rev:020}")
}

pub(super) fn workload_id(env: &str, service: &str, index: u32) -> String {
    format!("{env}/{service}/{index}")
}

pub(super) fn remember_certificate(record: &mut NodeRecord, certificate: &str) {
    if !record.certificates.iter().any(|c| c == certificate) {
        record.certificates.push(certificate.to_string());
        let excess = record.certificates.len().saturating_sub(CERTIFICATES_KEPT);
        record.certificates.drain(..excess);
    }
}

#[cfg(test)]
mod gpu_tests {
    use super::*;

    fn h100(index: u32) -> pb::GpuDevice {
        pb::GpuDevice {
            index,
            uuid: format!("GPU-{index}"),
            name: "NVIDIA H100 80GB HBM3".into(),
            memory_total_bytes: 85_520_809_984,
            mig_mode: "disabled".into(),
            driver_version: "550.54.15".into(),
            cuda_version: "12.4".into(),
            compute_capability: "9.0".into(),
        }
    }

    #[test]
    fn gpu_facts_round_trip_through_the_record() {
        let wire = pb::NodeFacts {
            hostname: "gpu-1".into(),
            gpus: vec![h100(0), h100(1)],
            ..pb::NodeFacts::default()
        };
        let facts = Facts::from(wire.clone());
        assert_eq!(facts.gpus.len(), 2);
        assert_eq!(facts.gpus[1].uuid, "GPU-1");
        let stored = serde_json::to_string(&facts).unwrap();
        let read: Facts = serde_json::from_str(&stored).unwrap();
        assert_eq!(read, facts);
        assert_eq!(pb::NodeFacts::from(&read).gpus, wire.gpus);
    }

    #[test]
    fn node_records_without_gpus_load_and_are_stored_as_before() {
        // A record stored before GPUs were reported.
        let old = r#"{"name":"n1","facts":{"hostname":"h","os":"","kernel":"","arch":"x86_64",
            "cpus":2,"memory_bytes":1024,"docker_version":"27","labels":{}},
            "agent_version":"0.1.0","first_seen_unix_ms":1,"last_seen_unix_ms":2}"#;
        let record: NodeRecord = serde_json::from_str(old).unwrap();
        assert!(record.facts.gpus.is_empty());
        // A node without GPUs writes no `gpus` key.
        let written = serde_json::to_value(&record).unwrap();
        assert!(written["facts"].get("gpus").is_none(), "{written}");
        // Nor a node outside a Docker Swarm a `swarm` key.
        assert!(record.facts.swarm.is_none());
        assert!(written["facts"].get("swarm").is_none(), "{written}");
    }

    #[test]
    fn an_agent_cannot_send_unbounded_gpu_facts() {
        let mut long = h100(0);
        long.name = "x".repeat(10_000);
        let facts = Facts::from(pb::NodeFacts {
            gpus: std::iter::repeat_n(long, MAX_GPUS + 10).collect(),
            ..pb::NodeFacts::default()
        });
        assert_eq!(facts.gpus.len(), MAX_GPUS);
        assert_eq!(facts.gpus[0].name.len(), 128);
    }
}

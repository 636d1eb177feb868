//! What desired state is made of, as stored: service, revision, node,
//! revocation and enrolment records, their store keys, and node facts.

use super::*;

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
    pub facts: Facts,
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

/// Host facts reported in Hello (domain copy of `pb::NodeFacts`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub docker_version: String,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub platform_os: String,
    /// Roots under which the node allows bind mounts of host paths,
    /// normalised (`convoy_api::host_paths`).
    #[serde(default)]
    pub allowed_bind_paths: Vec<String>,
    /// The kinds of host access the node grants (`--allow-host-access`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_host_access: Vec<String>,
}

impl From<pb::NodeFacts> for Facts {
    fn from(f: pb::NodeFacts) -> Self {
        let pb::NodeFacts {
            hostname,
            os,
            kernel,
            arch,
            cpus,
            memory_bytes,
            docker_version,
            labels,
            platform_os,
            allowed_bind_paths,
            allowed_host_access,
        } = f;
        // Only the kinds there are (an unknown one grants nothing).
        let allowed_host_access = allowed_host_access
            .iter()
            .filter_map(|k| convoy_api::host_access::parse_grant(k).ok())
            .take(convoy_api::host_access::KINDS.len() + 1)
            .collect();
        // From the agent: kept only when well-formed, and a bounded number.
        let allowed_bind_paths = allowed_bind_paths
            .iter()
            .filter_map(|p| convoy_api::host_paths::normalize(p).ok())
            .take(convoy_api::host_paths::MAX_ALLOWED_BIND_PATHS)
            .collect();
        Self {
            hostname,
            os,
            kernel,
            arch,
            cpus,
            memory_bytes,
            docker_version,
            labels: labels.into_iter().collect(),
            platform_os,
            allowed_bind_paths,
            allowed_host_access,
        }
    }
}

impl From<&Facts> for pb::NodeFacts {
    fn from(f: &Facts) -> Self {
        pb::NodeFacts {
            hostname: f.hostname.clone(),
            os: f.os.clone(),
            kernel: f.kernel.clone(),
            arch: f.arch.clone(),
            cpus: f.cpus,
            memory_bytes: f.memory_bytes,
            docker_version: f.docker_version.clone(),
            labels: f.labels.clone().into_iter().collect(),
            platform_os: f.platform_os.clone(),
            allowed_bind_paths: f.allowed_bind_paths.clone(),
            allowed_host_access: f.allowed_host_access.clone(),
        }
    }
}

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

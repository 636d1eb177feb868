//! Reading the Compose document. Every key and value is checked inside a
//! serde visitor, while serde_yaml still knows where it is, so an error
//! carries the line and column of the key or value at fault;
//! serde_path_to_error adds its key path.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_yaml::Value;

use super::locate::{self, PathDisplay, Seg};
use super::{
    values, Constraint, DeployMode, DeploySpec, FailureAction, HealthcheckSpec, PortSpec,
    ProbeCheck, ProbeSpec, Protocol, RestartCondition, RestartSpec, ServiceSpec, Strategy,
    UnitFields, UpdateOrder, UpdatePolicy,
};

/// A warning, with the path of the key it is about: relative to the mapping
/// that found it until the parents put their keys in front. Also an error
/// that only shows once a whole service was read (two keys that disagree),
/// which has no position of its own.
pub(super) struct Note {
    pub path: Vec<Seg>,
    pub message: String,
}

impl Note {
    fn new(key: &str, message: impl Into<String>) -> Self {
        Note {
            path: vec![Seg::Key(key.to_owned())],
            message: message.into(),
        }
    }
}

/// Puts `parent` in front of the paths of `notes` and adds them to `into`.
fn nest(into: &mut Vec<Note>, parent: Seg, notes: Vec<Note>) {
    into.extend(notes.into_iter().map(|mut note| {
        note.path.insert(0, parent.clone());
        note
    }));
}

const UNSUPPORTED: &str = "not supported by Convoy yet, ignored";

/// A whole spec file, as read.
pub(super) struct Document {
    /// `services:`, then `units:`.
    pub services: Vec<(String, ServiceSpec)>,
    pub notes: Vec<Note>,
    /// Errors between keys, found after the service that has them was read;
    /// `read` refuses the document with the first.
    problems: Vec<Note>,
}

/// Why and where reading stopped.
pub(super) struct ReadError {
    pub path: Vec<Seg>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

/// Reads `content`. Merge keys (`<<: *anchor`) are applied first, which goes
/// through `serde_yaml::Value` and so loses the positions: errors in such a
/// file carry only their key path, which the caller turns into a line.
pub(super) fn read(content: &str) -> Result<Document, ReadError> {
    let document = read_document(content)?;
    if let Some(problem) = document.problems.first() {
        // serde_yaml is done with the text by now: find the key by its path.
        let (line, column) = match locate::position_of(content, &problem.path) {
            Some((line, column)) => (Some(line), column),
            None => (None, None),
        };
        return Err(ReadError {
            path: problem.path.clone(),
            line,
            column,
            message: problem.message.clone(),
        });
    }
    Ok(document)
}

fn read_document(content: &str) -> Result<Document, ReadError> {
    let yaml_error = match serde_yaml::from_str::<Value>(content) {
        Ok(mut value) if has_merge_keys(&value) => {
            value.apply_merge().map_err(|err| ReadError {
                path: Vec::new(),
                line: None,
                column: None,
                message: err.to_string(),
            })?;
            // The visitors read scalars as text, as serde_yaml hands them over
            // when it reads the text itself.
            stringify_scalars(&mut value);
            return serde_path_to_error::deserialize(value).map_err(|err| read_error(err, None));
        }
        Ok(_) => None,
        Err(err) => Some(err.to_string()),
    };
    serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(content))
        .map_err(|err| read_error(err, yaml_error.as_deref()))
}

/// `yaml_error`: why the text is not YAML at all, if it is not. An error
/// that says the same is a syntax error, and is called one.
fn read_error(
    err: serde_path_to_error::Error<serde_yaml::Error>,
    yaml_error: Option<&str>,
) -> ReadError {
    // An unknown segment (a key the parser never got to read) says nothing.
    let path: Vec<Seg> = err
        .path()
        .iter()
        .filter_map(|seg| match seg {
            serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
            serde_path_to_error::Segment::Unknown => None,
        })
        .collect();
    let inner = err.into_inner();
    let location = inner.location();
    let mut message = inner.to_string();
    let syntax = yaml_error == Some(message.as_str());
    // serde_yaml writes "PATH: MESSAGE at line L column C"; the caller writes
    // the path and position its own way.
    if let Some(loc) = &location {
        let at = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(pos) = message.find(&at) {
            message.replace_range(pos..pos + at.len(), "");
        }
    }
    let prefix = (1..=path.len())
        .rev()
        .map(|n| format!("{}: ", PathDisplay(&path[..n])))
        .find(|prefix| message.starts_with(prefix.as_str()));
    if let Some(prefix) = prefix {
        message.replace_range(..prefix.len(), "");
    }
    if syntax {
        message.insert_str(0, "invalid YAML: ");
    }
    ReadError {
        path,
        line: location.as_ref().map(|l| l.line()),
        column: location.as_ref().map(|l| l.column()),
        message,
    }
}

fn has_merge_keys(value: &Value) -> bool {
    match value {
        Value::Mapping(map) => map
            .iter()
            .any(|(k, v)| k.as_str() == Some("<<") || has_merge_keys(v)),
        Value::Sequence(seq) => seq.iter().any(has_merge_keys),
        Value::Tagged(tagged) => has_merge_keys(&tagged.value),
        _ => false,
    }
}

fn stringify_scalars(value: &mut Value) {
    match value {
        Value::Bool(b) => *value = Value::String(b.to_string()),
        Value::Number(n) => *value = Value::String(n.to_string()),
        Value::Sequence(seq) => seq.iter_mut().for_each(stringify_scalars),
        Value::Mapping(map) => {
            let entries = std::mem::take(map);
            for (mut k, mut v) in entries {
                stringify_scalars(&mut k);
                stringify_scalars(&mut v);
                map.insert(k, v);
            }
        }
        Value::Tagged(tagged) => stringify_scalars(&mut tagged.value),
        Value::Null | Value::String(_) => {}
    }
}

// ---- keys ----

/// The keys of one kind of mapping: those Convoy reads, and the Compose keys
/// it ignores with a warning. `x-*` extension keys are ignored silently; any
/// other key is an error.
trait KeySet: Sized {
    const SUPPORTED: &'static [&'static str];
    const IGNORED: &'static [&'static str];
    fn from_key(key: &str) -> Option<Self>;
}

macro_rules! key_set {
    ($name:ident { $($variant:ident = $key:literal),* $(,)? } ignored [$($ignored:literal),* $(,)?]) => {
        #[derive(Clone, Copy)]
        enum $name {
            $($variant),*
        }

        impl KeySet for $name {
            const SUPPORTED: &'static [&'static str] = &[$($key),*];
            const IGNORED: &'static [&'static str] = &[$($ignored),*];
            fn from_key(key: &str) -> Option<Self> {
                match key {
                    $($key => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

key_set!(TopKey {
    Services = "services",
    Units = "units",
    Name = "name",
    Version = "version",
} ignored ["networks", "volumes", "secrets", "configs", "include"]);

key_set!(ServiceKey {
    Image = "image",
    Command = "command",
    Entrypoint = "entrypoint",
    Environment = "environment",
    Ports = "ports",
    Labels = "labels",
    Volumes = "volumes",
    WorkingDir = "working_dir",
    User = "user",
    Restart = "restart",
    StopSignal = "stop_signal",
    StopGracePeriod = "stop_grace_period",
    Healthcheck = "healthcheck",
    Deploy = "deploy",
    Convoy = "x-convoy",
} ignored [
    "annotations", "attach", "blkio_config", "build", "cap_add", "cap_drop", "cgroup_parent",
    "configs", "container_name", "cpu_count", "cpu_percent", "cpu_period", "cpu_quota",
    "cpu_rt_period", "cpu_rt_runtime", "cpu_shares", "cpus", "cpuset", "credential_spec",
    "depends_on", "develop", "device_cgroup_rules", "devices", "dns", "dns_opt", "dns_search",
    "domainname", "env_file", "expose", "extends", "external_links", "extra_hosts", "gpus",
    "group_add", "hostname", "init", "ipc", "isolation", "links", "logging",
    "mac_address", "mem_limit", "mem_reservation", "mem_swappiness", "memswap_limit",
    "network_mode", "networks", "oom_kill_disable", "oom_score_adj", "pid", "pids_limit",
    "platform", "post_start", "pre_stop", "privileged", "profiles", "pull_policy", "read_only",
    "runtime", "scale", "secrets", "security_opt", "shm_size", "stdin_open", "storage_opt",
    "sysctls", "tmpfs", "tty", "ulimits", "userns_mode", "uts", "volumes_from",
]);

// `units:` is Convoy's own section: no Compose key to skip there.
key_set!(UnitKey {
    Unit = "unit",
    ExecStart = "exec_start",
    User = "user",
    Restart = "restart",
    Environment = "environment",
    WorkingDir = "working_dir",
    Description = "description",
    State = "state",
    Enabled = "enabled",
    Deploy = "deploy",
    Convoy = "x-convoy",
} ignored []);

/// The keys of a unit Convoy writes, which an adopted unit cannot have.
const WRITTEN_UNIT_KEYS: [&str; 6] = [
    "exec_start",
    "user",
    "restart",
    "environment",
    "working_dir",
    "description",
];

/// The keys of an adopted unit, which a unit Convoy writes cannot have.
const ADOPTED_UNIT_KEYS: [&str; 2] = ["state", "enabled"];

key_set!(DeployKey {
    Mode = "mode",
    Replicas = "replicas",
    Placement = "placement",
    RestartPolicy = "restart_policy",
    UpdateConfig = "update_config",
    RollbackConfig = "rollback_config",
} ignored ["endpoint_mode", "labels", "resources"]);

// `update_config` and `rollback_config`: Compose has no other keys there.
key_set!(UpdateConfigKey {
    Parallelism = "parallelism",
    Delay = "delay",
    FailureAction = "failure_action",
    Monitor = "monitor",
    MaxFailureRatio = "max_failure_ratio",
    Order = "order",
} ignored []);

key_set!(PlacementKey {
    Constraints = "constraints",
} ignored ["preferences", "max_replicas_per_node"]);

key_set!(RestartPolicyKey {
    Condition = "condition",
    MaxAttempts = "max_attempts",
} ignored ["delay", "window"]);

key_set!(HealthcheckKey {
    Test = "test",
    Interval = "interval",
    Timeout = "timeout",
    Retries = "retries",
    StartPeriod = "start_period",
    Disable = "disable",
} ignored ["start_interval"]);

// `x-convoy` is Convoy's own block: every key in it is Convoy's, so an
// unknown one is a typo, never a Compose key to skip.
key_set!(ConvoyKey {
    Probes = "probes",
    Update = "update",
} ignored []);

key_set!(ConvoyUpdateKey {
    Strategy = "strategy",
    MaxParallel = "max_parallel",
    Delay = "delay",
    MinHealthyTime = "min_healthy_time",
    HealthyDeadline = "healthy_deadline",
    ProgressDeadline = "progress_deadline",
    Order = "order",
    AutoRollback = "auto_rollback",
    Canaries = "canaries",
    AutoPromote = "auto_promote",
    ScaleDownDelay = "scale_down_delay",
} ignored []);

key_set!(ProbeKey {
    Name = "name",
    Http = "http",
    Tcp = "tcp",
    Exec = "exec",
    Interval = "interval",
    Timeout = "timeout",
    FailureThreshold = "failure_threshold",
    SuccessThreshold = "success_threshold",
    StartPeriod = "start_period",
} ignored []);

key_set!(HttpProbeKey {
    Port = "port",
    Path = "path",
    ExpectStatus = "expect_status",
} ignored []);

key_set!(TcpProbeKey {
    Port = "port",
} ignored []);

key_set!(PortKey {
    Target = "target",
    Published = "published",
    HostIp = "host_ip",
    Protocol = "protocol",
} ignored ["mode", "name", "app_protocol"]);

/// Remembers `key`, refusing it the second time. Done while the key is read,
/// so the error points at the repeated key.
fn first_time(seen: &mut Vec<String>, key: &str, what: &str) -> Result<(), String> {
    if seen.iter().any(|s| s == key) {
        return Err(format!("duplicate {what} `{key}`"));
    }
    seen.push(key.to_owned());
    Ok(())
}

enum Key<K> {
    Known(K),
    Ignored(&'static str),
    Extension,
}

struct KeySeed<'a, K> {
    seen: &'a mut Vec<String>,
    keys: PhantomData<K>,
}

impl<'de, K: KeySet> DeserializeSeed<'de> for KeySeed<'_, K> {
    type Value = Key<K>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key<K>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, K: KeySet> Visitor<'de> for KeySeed<'_, K> {
    type Value = Key<K>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key<K>, E> {
        first_time(self.seen, key, "key").map_err(E::custom)?;
        if let Some(known) = K::from_key(key) {
            Ok(Key::Known(known))
        } else if let Some(ignored) = K::IGNORED.iter().find(|k| **k == key) {
            Ok(Key::Ignored(ignored))
        } else if key.starts_with("x-") {
            Ok(Key::Extension)
        } else {
            Err(E::unknown_field(key, K::SUPPORTED))
        }
    }
}

/// The next key of a mapping that Convoy reads; skips (with a note) the
/// Compose keys it ignores, and extension keys.
fn next_key<'de, A: MapAccess<'de>, K: KeySet>(
    map: &mut A,
    seen: &mut Vec<String>,
    notes: &mut Vec<Note>,
) -> Result<Option<K>, A::Error> {
    loop {
        let seed = KeySeed {
            seen: &mut *seen,
            keys: PhantomData,
        };
        match map.next_key_seed(seed)? {
            None => return Ok(None),
            Some(Key::Known(key)) => return Ok(Some(key)),
            Some(Key::Ignored(key)) => {
                map.next_value::<IgnoredAny>()?;
                notes.push(Note::new(key, UNSUPPORTED));
            }
            Some(Key::Extension) => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
}

// ---- generic seeds ----

/// A scalar, read as its text and checked by `parse` inside the visitor, so
/// that serde_yaml puts the scalar's position on the error.
struct Scalar<T, F> {
    expecting: &'static str,
    parse: F,
    value: PhantomData<fn() -> T>,
}

fn scalar<T, F: FnOnce(&str) -> Result<T, String>>(
    expecting: &'static str,
    parse: F,
) -> Scalar<T, F> {
    Scalar {
        expecting,
        parse,
        value: PhantomData,
    }
}

impl<'de, T, F: FnOnce(&str) -> Result<T, String>> DeserializeSeed<'de> for Scalar<T, F> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, T, F: FnOnce(&str) -> Result<T, String>> Visitor<'de> for Scalar<T, F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }
}

/// A plain string, whatever the scalar looks like (`user: 1000`).
fn text(expecting: &'static str) -> Scalar<String, impl FnOnce(&str) -> Result<String, String>> {
    scalar(expecting, |s| Ok(s.to_owned()))
}

/// `null` (or nothing) for "not set", as Compose reads it.
struct Opt<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Opt<S> {
    type Value = Option<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for Opt<S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(d).map(Some)
    }
}

/// A sequence whose items are read by the seeds `item` makes, given the index.
struct List<F> {
    expecting: &'static str,
    item: F,
}

impl<'de, S: DeserializeSeed<'de>, F: FnMut(usize) -> S> DeserializeSeed<'de> for List<F> {
    type Value = Vec<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, S: DeserializeSeed<'de>, F: FnMut(usize) -> S> Visitor<'de> for List<F> {
    type Value = Vec<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed((self.item)(items.len()))? {
            items.push(item);
        }
        Ok(items)
    }
}

fn list<'de, S: DeserializeSeed<'de>>(
    expecting: &'static str,
    item: impl FnMut(usize) -> S,
) -> List<impl FnMut(usize) -> S> {
    List { expecting, item }
}

/// Reads the value of the current key with `seed`, `null` meaning "not set".
fn value<'de, A: MapAccess<'de>, S: DeserializeSeed<'de>>(
    map: &mut A,
    seed: S,
) -> Result<Option<S::Value>, A::Error> {
    map.next_value_seed(Opt(seed))
}

// ---- the document ----

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(DocumentVisitor)
    }
}

struct DocumentVisitor;

impl<'de> Visitor<'de> for DocumentVisitor {
    type Value = Document;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Compose file: a mapping with `services:` or `units:`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Document, A::Error> {
        let mut seen = Vec::new();
        let mut notes = Vec::new();
        let mut problems = Vec::new();
        let mut services = None;
        let mut units = None;
        while let Some(key) = next_key::<A, TopKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                TopKey::Services => {
                    let read = map.next_value_seed(ServicesSeed)?;
                    services = Some(read.services);
                    nest(&mut notes, Seg::Key("services".to_owned()), read.notes);
                    nest(
                        &mut problems,
                        Seg::Key("services".to_owned()),
                        read.problems,
                    );
                }
                TopKey::Units => {
                    let read = map.next_value_seed(UnitsSeed)?;
                    units = Some(read.services);
                    nest(&mut notes, Seg::Key("units".to_owned()), read.notes);
                    nest(&mut problems, Seg::Key("units".to_owned()), read.problems);
                }
                TopKey::Name => {
                    value(&mut map, scalar("a project name", values::project_name))?;
                }
                TopKey::Version => {
                    map.next_value::<IgnoredAny>()?;
                    notes.push(Note::new("version", "obsolete in Compose, ignored"));
                }
            }
        }
        if services.is_none() && units.is_none() {
            return Err(de::Error::custom(
                "missing field `services`: a spec lists its services under `services:` \
                 (containers) or `units:` (systemd services)",
            ));
        }
        let mut services = services.unwrap_or_default();
        let units = units.unwrap_or_default();
        // One namespace: instances, status and `convoy delete` go by name.
        for (name, _) in &units {
            if services.iter().any(|(service, _)| service == name) {
                problems.push(Note {
                    path: vec![Seg::Key("units".to_owned()), Seg::Key(name.clone())],
                    message: format!(
                        "`{name}` is also a service under `services:`: services and units share \
                         one namespace, so give one of them another name"
                    ),
                });
            }
        }
        services.extend(units);
        Ok(Document {
            services,
            notes,
            problems,
        })
    }
}

struct Services {
    services: Vec<(String, ServiceSpec)>,
    notes: Vec<Note>,
    problems: Vec<Note>,
}

struct ServicesSeed;

impl<'de> DeserializeSeed<'de> for ServicesSeed {
    type Value = Services;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ServicesSeed {
    type Value = Services;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping from service names to services")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Vec::new();
        let mut services = Vec::new();
        let mut notes = Vec::new();
        let mut problems = Vec::new();
        loop {
            let name_seed = scalar("a service name", |name: &str| {
                values::service_name(name)?;
                first_time(&mut seen, name, "service")?;
                Ok(name.to_owned())
            });
            let Some(name) = map.next_key_seed(name_seed)? else {
                break;
            };
            let (spec, service_notes, problem) = map.next_value_seed(ServiceSeed)?;
            nest(&mut notes, Seg::Key(name.clone()), service_notes);
            nest(
                &mut problems,
                Seg::Key(name.clone()),
                problem.into_iter().collect(),
            );
            services.push((name, spec));
        }
        if services.is_empty() {
            return Err(de::Error::custom(
                "no services defined: a spec needs at least one",
            ));
        }
        Ok(Services {
            services,
            notes,
            problems,
        })
    }
}

// ---- a service ----

/// A service, its warnings, and the first error between its keys.
struct ServiceSeed;

impl<'de> DeserializeSeed<'de> for ServiceSeed {
    type Value = (ServiceSpec, Vec<Note>, Option<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ServiceSeed {
    type Value = (ServiceSpec, Vec<Note>, Option<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a service: a mapping with at least `image:`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Vec::new();
        let mut notes = Vec::new();
        let mut spec = ServiceSpec::default();
        let mut image = None;
        let mut restart = None;
        let mut deploy_restart = None;
        let mut update_config = None;
        let mut replicas_written = false;
        let mut convoy_update = None;
        while let Some(key) = next_key::<A, ServiceKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                ServiceKey::Image => {
                    image = value(&mut map, scalar("an image reference", values::image))?
                }
                ServiceKey::Command => {
                    spec.command = value(&mut map, CommandSeed)?.unwrap_or_default()
                }
                ServiceKey::Entrypoint => {
                    spec.entrypoint = value(&mut map, CommandSeed)?.unwrap_or_default()
                }
                ServiceKey::Environment => {
                    let entries = value(&mut map, EntriesSeed::ENVIRONMENT)?.unwrap_or_default();
                    for (name, val) in entries {
                        match val {
                            Some(val) => {
                                spec.environment.insert(name, val);
                            }
                            None => notes.push(Note {
                                path: vec![Seg::Key("environment".to_owned()), Seg::Key(name)],
                                message:
                                    "has no value, and Convoy does not take values from the shell \
                                          (as Compose does): left unset"
                                        .to_owned(),
                            }),
                        }
                    }
                }
                ServiceKey::Ports => {
                    let ports =
                        value(&mut map, list("a list of ports", |_| PortSeed))?.unwrap_or_default();
                    for (index, (port, port_notes)) in ports.into_iter().enumerate() {
                        let mut indexed = Vec::new();
                        nest(&mut indexed, Seg::Index(index), port_notes);
                        nest(&mut notes, Seg::Key("ports".to_owned()), indexed);
                        spec.ports.push(port);
                    }
                }
                ServiceKey::Labels => {
                    let entries = value(&mut map, EntriesSeed::LABELS)?.unwrap_or_default();
                    spec.labels = entries
                        .into_iter()
                        .map(|(name, val)| (name, val.unwrap_or_default()))
                        .collect();
                }
                ServiceKey::Volumes => {
                    spec.volumes = value(
                        &mut map,
                        list(
                            "a list of volumes in the short syntax `SRC:DST[:ro|rw]`",
                            |_| {
                                scalar(
                                    "a volume in the short syntax `SRC:DST[:ro|rw]`",
                                    values::volume,
                                )
                            },
                        ),
                    )?
                    .unwrap_or_default();
                }
                ServiceKey::WorkingDir => {
                    spec.working_dir =
                        value(&mut map, scalar("an absolute path", values::working_dir))?
                            .unwrap_or_default();
                }
                ServiceKey::User => {
                    spec.user = value(&mut map, text("a user"))?.unwrap_or_default()
                }
                ServiceKey::Restart => {
                    restart = value(&mut map, scalar("a restart policy", values::restart))?
                }
                ServiceKey::StopSignal => {
                    spec.stop_signal =
                        value(&mut map, scalar("a signal name", values::stop_signal))?
                            .unwrap_or_default();
                }
                ServiceKey::StopGracePeriod => {
                    spec.stop_grace_period_ms = value(
                        &mut map,
                        scalar("a duration such as `10s`", values::duration_ms),
                    )?
                    .unwrap_or_default();
                }
                ServiceKey::Healthcheck => {
                    if let Some((healthcheck, healthcheck_notes)) =
                        value(&mut map, HealthcheckSeed)?
                    {
                        spec.healthcheck = Some(healthcheck);
                        nest(
                            &mut notes,
                            Seg::Key("healthcheck".to_owned()),
                            healthcheck_notes,
                        );
                    }
                }
                ServiceKey::Convoy => {
                    if let Some(convoy) = value(&mut map, ConvoySeed)? {
                        spec.probes = convoy.probes;
                        convoy_update = convoy.update;
                    }
                }
                ServiceKey::Deploy => {
                    if let Some(deploy) = value(&mut map, DeploySeed)? {
                        spec.deploy.mode = deploy.mode;
                        spec.deploy.replicas = deploy.replicas;
                        spec.deploy.constraints = deploy.constraints;
                        deploy_restart = deploy.restart;
                        update_config = deploy.update;
                        replicas_written = deploy.replicas_written;
                        nest(&mut notes, Seg::Key("deploy".to_owned()), deploy.notes);
                    }
                }
            }
        }
        spec.image = image.ok_or_else(|| de::Error::missing_field("image"))?;
        // As in Compose, `deploy.restart_policy` wins over `restart`.
        spec.restart = deploy_restart.or(restart).unwrap_or_default();
        let problem = match update_policy(
            &update_config.unwrap_or_default(),
            &convoy_update.unwrap_or_default(),
            &spec.deploy,
            replicas_written,
        ) {
            Ok(policy) => {
                spec.deploy.update = policy;
                None
            }
            Err(problem) => Some(problem),
        };
        Ok((spec, notes, problem))
    }
}

// ---- units ----

/// `units:`: a mapping from names to systemd services.
struct UnitsSeed;

impl<'de> DeserializeSeed<'de> for UnitsSeed {
    type Value = Services;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for UnitsSeed {
    type Value = Services;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping from unit names to units")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Vec::new();
        let mut units: Vec<(String, ServiceSpec)> = Vec::new();
        let mut notes = Vec::new();
        let mut problems = Vec::new();
        loop {
            let name_seed = scalar("a unit name", |name: &str| {
                values::unit_name(name)?;
                first_time(&mut seen, name, "unit")?;
                Ok(name.to_owned())
            });
            let Some(name) = map.next_key_seed(name_seed)? else {
                break;
            };
            let (spec, unit_notes, mut problem) = map.next_value_seed(UnitSeed { name: &name })?;
            // Two entries keeping one unit in two states would fight.
            let adopted = spec.unit.as_ref().filter(|u| u.adopt);
            if let Some(unit) = adopted {
                let other = units.iter().find(|(_, other)| {
                    other
                        .unit
                        .as_ref()
                        .is_some_and(|o| o.unit_name == unit.unit_name)
                });
                if let Some((other, _)) = other {
                    problem.get_or_insert(Note {
                        path: vec![Seg::Key("unit".to_owned())],
                        message: format!(
                            "`{}` is adopted by `{other}` already: adopt a unit once",
                            unit.unit_name
                        ),
                    });
                }
            }
            nest(&mut notes, Seg::Key(name.clone()), unit_notes);
            nest(
                &mut problems,
                Seg::Key(name.clone()),
                problem.into_iter().collect(),
            );
            units.push((name, spec));
        }
        if units.is_empty() {
            return Err(de::Error::custom(
                "no units defined: leave `units:` out, or describe at least one",
            ));
        }
        Ok(Services {
            services: units,
            notes,
            problems,
        })
    }
}

/// One entry of `units:`, its warnings, and the first error between its
/// keys. `name`: its key, for `convoy-NAME.service`.
struct UnitSeed<'a> {
    name: &'a str,
}

impl<'de> DeserializeSeed<'de> for UnitSeed<'_> {
    type Value = (ServiceSpec, Vec<Note>, Option<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for UnitSeed<'_> {
    type Value = (ServiceSpec, Vec<Note>, Option<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a unit: a mapping with `exec_start:`, or `unit:` to adopt an existing one")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Vec::new();
        let mut notes = Vec::new();
        let mut spec = ServiceSpec::default();
        let mut unit = UnitFields::default();
        let mut adopted = None;
        let mut deploy_restart = false;
        let mut update_config = None;
        let mut replicas_written = false;
        let mut convoy_update = None;
        while let Some(key) = next_key::<A, UnitKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                UnitKey::Unit => {
                    adopted = value(
                        &mut map,
                        scalar("a unit name such as `nginx.service`", values::adopted_unit),
                    )?;
                }
                UnitKey::ExecStart => {
                    unit.exec_start = value(&mut map, ExecStartSeed)?.unwrap_or_default()
                }
                UnitKey::User => {
                    unit.user = value(&mut map, scalar("a user name or id", values::unit_user))?
                        .unwrap_or_default();
                }
                UnitKey::Restart => {
                    unit.restart = value(
                        &mut map,
                        scalar("a systemd restart policy", values::unit_restart),
                    )?
                    .unwrap_or_default();
                }
                UnitKey::Environment => {
                    let entries =
                        value(&mut map, EntriesSeed::UNIT_ENVIRONMENT)?.unwrap_or_default();
                    for (name, val) in entries {
                        match val {
                            Some(val) => {
                                unit.environment.insert(name, val);
                            }
                            None => notes.push(Note {
                                path: vec![Seg::Key("environment".to_owned()), Seg::Key(name)],
                                message: "has no value, and Convoy does not take values from the \
                                          shell: left unset"
                                    .to_owned(),
                            }),
                        }
                    }
                }
                UnitKey::WorkingDir => {
                    unit.working_dir = value(
                        &mut map,
                        scalar("an absolute path", values::unit_working_dir),
                    )?
                    .unwrap_or_default();
                }
                UnitKey::Description => {
                    unit.description = value(
                        &mut map,
                        scalar("a one-line description", values::unit_description),
                    )?
                    .unwrap_or_default();
                }
                UnitKey::State => {
                    unit.state = value(
                        &mut map,
                        scalar("`running` or `stopped`", values::unit_state),
                    )?
                    .unwrap_or_default();
                }
                UnitKey::Enabled => {
                    unit.enabled = value(&mut map, scalar("`true` or `false`", values::boolean))?
                        .unwrap_or(true);
                }
                UnitKey::Convoy => {
                    if let Some(convoy) = value(&mut map, ConvoySeed)? {
                        spec.probes = convoy.probes;
                        convoy_update = convoy.update;
                    }
                }
                UnitKey::Deploy => {
                    if let Some(deploy) = value(&mut map, DeploySeed)? {
                        spec.deploy.mode = deploy.mode;
                        spec.deploy.replicas = deploy.replicas;
                        spec.deploy.constraints = deploy.constraints;
                        deploy_restart = deploy.restart.is_some();
                        update_config = deploy.update;
                        replicas_written = deploy.replicas_written;
                        nest(&mut notes, Seg::Key("deploy".to_owned()), deploy.notes);
                    }
                }
            }
        }
        let written = |keys: &[&'static str]| {
            keys.iter()
                .copied()
                .find(|key| seen.iter().any(|s| s == key))
        };
        let problem = |key: &str, message: String| Note {
            path: vec![Seg::Key(key.to_owned())],
            message,
        };
        let mut problems = Vec::new();
        match adopted {
            Some(adopted) => {
                if let Some(key) = written(&WRITTEN_UNIT_KEYS) {
                    problems.push(problem(
                        key,
                        format!(
                            "`unit: {adopted}` adopts an existing unit, whose file Convoy never \
                             writes: remove `{key}`, or remove `unit:` to have Convoy write \
                             `convoy-{}.service`",
                            self.name
                        ),
                    ));
                }
                unit.unit_name = adopted;
                unit.adopt = true;
            }
            None => {
                if let Some(key) = written(&ADOPTED_UNIT_KEYS) {
                    problems.push(problem(
                        key,
                        "is for units adopted with `unit: NAME.service`; a unit Convoy writes \
                         always runs and is enabled"
                            .to_owned(),
                    ));
                }
                if unit.exec_start.is_empty() {
                    return Err(de::Error::custom(
                        "missing field `exec_start`: give the program to run (an absolute \
                         path), or `unit: NAME.service` to adopt an existing unit",
                    ));
                }
                unit.unit_name = format!("convoy-{}.service", self.name);
            }
        }
        if deploy_restart {
            problems.push(Note {
                path: vec![
                    Seg::Key("deploy".to_owned()),
                    Seg::Key("restart_policy".to_owned()),
                ],
                message: "systemd restarts units: use the unit's `restart:` (systemd's \
                          `Restart=`) instead"
                    .to_owned(),
            });
        }
        match update_policy(
            &update_config.unwrap_or_default(),
            &convoy_update.unwrap_or_default(),
            &spec.deploy,
            replicas_written,
        ) {
            Ok(policy) => spec.deploy.update = policy,
            Err(problem) => problems.push(problem),
        }
        spec.unit = Some(unit);
        Ok((spec, notes, problems.into_iter().next()))
    }
}

/// `exec_start`: a command line split as a shell would (as Compose's
/// `command`), or a list; the program must be an absolute path.
struct ExecStartSeed;

impl<'de> DeserializeSeed<'de> for ExecStartSeed {
    type Value = Vec<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ExecStartSeed {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a command line or a list of arguments, starting with an absolute path")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        values::split_command(v)
            .and_then(values::exec_start)
            .map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        CommandSeed
            .visit_seq(seq)
            .and_then(|words| values::exec_start(words).map_err(de::Error::custom))
    }
}

/// `command` and `entrypoint`: a string split as a shell would, or a list.
struct CommandSeed;

impl<'de> DeserializeSeed<'de> for CommandSeed {
    type Value = Vec<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CommandSeed {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a command line or a list of arguments")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        values::split_command(v).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut args = Vec::new();
        while let Some(arg) = seq.next_element_seed(text("an argument"))? {
            args.push(arg);
        }
        Ok(args)
    }
}

/// `environment` and `labels`: a mapping, or a list of `KEY=VALUE` (a bare
/// `KEY` has no value). Keeps the order written.
#[derive(Clone, Copy)]
struct EntriesSeed {
    noun: &'static str,
    check: fn(&str) -> Result<(), String>,
    check_value: fn(&str) -> Result<(), String>,
}

fn any_value(_: &str) -> Result<(), String> {
    Ok(())
}

impl EntriesSeed {
    const ENVIRONMENT: Self = EntriesSeed {
        noun: "variable",
        check: values::env_name,
        check_value: any_value,
    };
    const LABELS: Self = EntriesSeed {
        noun: "label",
        check: values::label_name,
        check_value: any_value,
    };
    /// A unit's `environment`: each entry becomes an `Environment=` line.
    const UNIT_ENVIRONMENT: Self = EntriesSeed {
        noun: "variable",
        check: values::unit_env_name,
        check_value: values::unit_env_value,
    };

    fn entry_name(self, seen: &mut Vec<String>, name: &str) -> Result<(), String> {
        (self.check)(name)?;
        first_time(seen, name, self.noun)
    }
}

type Entries = Vec<(String, Option<String>)>;

impl<'de> DeserializeSeed<'de> for EntriesSeed {
    type Value = Entries;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Entries, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed {
    type Value = Entries;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping or a list of `KEY=VALUE` strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
        let mut seen = Vec::new();
        let mut entries = Vec::new();
        loop {
            let key_seed = scalar("a name", |name: &str| {
                self.entry_name(&mut seen, name)?;
                Ok(name.to_owned())
            });
            let Some(name) = map.next_key_seed(key_seed)? else {
                break;
            };
            let val = value(
                &mut map,
                scalar("a string, number or boolean", |val: &str| {
                    (self.check_value)(val)?;
                    Ok(val.to_owned())
                }),
            )?;
            entries.push((name, val));
        }
        Ok(entries)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Entries, A::Error> {
        let mut seen = Vec::new();
        let mut entries = Vec::new();
        loop {
            let item_seed = scalar("a `KEY=VALUE` string", |item: &str| {
                let (name, val) = match item.split_once('=') {
                    Some((name, val)) => (name, Some(val.to_owned())),
                    None => (item, None),
                };
                self.entry_name(&mut seen, name)?;
                if let Some(val) = &val {
                    (self.check_value)(val)?;
                }
                Ok((name.to_owned(), val))
            });
            let Some(entry) = seq.next_element_seed(item_seed)? else {
                break;
            };
            entries.push(entry);
        }
        Ok(entries)
    }
}

/// One of `ports`: the short syntax (`"8080:80"`, `80`) or the long one.
struct PortSeed;

impl<'de> DeserializeSeed<'de> for PortSeed {
    type Value = (PortSpec, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PortSeed {
    type Value = (PortSpec, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a port such as \"8080:80\", or a mapping with `target:`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        values::short_port(v)
            .map(|p| (p, Vec::new()))
            .map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Vec::new();
        let mut notes = Vec::new();
        let mut target = None;
        let mut port = PortSpec {
            host_ip: String::new(),
            published: 0,
            target: 0,
            protocol: Protocol::Tcp,
        };
        while let Some(key) = next_key::<A, PortKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                PortKey::Target => {
                    target = value(&mut map, scalar("a port number", values::target_port))?
                }
                PortKey::Published => {
                    port.published =
                        value(&mut map, scalar("a port number", values::published_port))?
                            .unwrap_or(0);
                }
                PortKey::HostIp => {
                    port.host_ip = value(&mut map, scalar("an IP address", values::host_ip))?
                        .unwrap_or_default();
                }
                PortKey::Protocol => {
                    port.protocol = value(&mut map, scalar("`tcp` or `udp`", values::protocol))?
                        .unwrap_or(Protocol::Tcp);
                }
            }
        }
        port.target = target.ok_or_else(|| de::Error::missing_field("target"))?;
        Ok((port, notes))
    }
}

// ---- healthcheck ----

/// Compose's `healthcheck`, run by Docker. `disable: true` and
/// `test: ["NONE"]` are read as the same thing.
struct HealthcheckSeed;

impl<'de> DeserializeSeed<'de> for HealthcheckSeed {
    type Value = (HealthcheckSpec, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HealthcheckSeed {
    type Value = (HealthcheckSpec, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping such as `test: [\"CMD\", \"/healthcheck\"]`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Vec::new();
        let mut notes = Vec::new();
        let mut check = HealthcheckSpec::default();
        let mut test = None;
        let mut disable = false;
        let duration = || scalar("a duration such as `30s`", values::duration_ms);
        while let Some(key) = next_key::<A, HealthcheckKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                HealthcheckKey::Test => test = value(&mut map, HealthTestSeed)?,
                HealthcheckKey::Interval => {
                    check.interval_ms = value(&mut map, duration())?.unwrap_or(0)
                }
                HealthcheckKey::Timeout => {
                    check.timeout_ms = value(&mut map, duration())?.unwrap_or(0)
                }
                HealthcheckKey::Retries => {
                    check.retries =
                        value(&mut map, scalar("a number of retries", values::count))?.unwrap_or(0);
                }
                HealthcheckKey::StartPeriod => {
                    check.start_period_ms = value(&mut map, duration())?.unwrap_or(0)
                }
                HealthcheckKey::Disable => {
                    disable = value(&mut map, scalar("`true` or `false`", values::boolean))?
                        .unwrap_or(false);
                }
            }
        }
        let none = test.as_deref() == Some(&["NONE".to_owned()][..]);
        if disable && test.is_some() && !none {
            return Err(de::Error::custom(
                "`disable: true` turns the healthcheck off, so it cannot also have a `test`",
            ));
        }
        if disable || none {
            // Docker's own spelling of "no healthcheck, not even the image's".
            return Ok((
                HealthcheckSpec {
                    test: vec!["NONE".to_owned()],
                    disable: true,
                    ..HealthcheckSpec::default()
                },
                notes,
            ));
        }
        check.test = test.unwrap_or_default();
        Ok((check, notes))
    }
}

/// `healthcheck.test`: a list starting with `CMD`, `CMD-SHELL` or `NONE`, or
/// a string, which the container's shell runs (`CMD-SHELL`).
struct HealthTestSeed;

impl<'de> DeserializeSeed<'de> for HealthTestSeed {
    type Value = Vec<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for HealthTestSeed {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a command line, or a list such as [\"CMD\", \"/healthcheck\"]")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        values::healthcheck_test(vec!["CMD-SHELL".to_owned(), v.to_owned()]).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut words = Vec::new();
        while let Some(word) = seq.next_element_seed(text("an argument"))? {
            words.push(word);
        }
        values::healthcheck_test(words).map_err(de::Error::custom)
    }
}

// ---- x-convoy ----

/// What `x-convoy` holds.
struct Convoy {
    probes: Vec<ProbeSpec>,
    update: Option<ConvoyUpdate>,
}

struct ConvoySeed;

impl<'de> DeserializeSeed<'de> for ConvoySeed {
    type Value = Convoy;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Convoy, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ConvoySeed {
    type Value = Convoy;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping such as `probes: [...]` or `update: {...}`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Convoy, A::Error> {
        let mut seen = Vec::new();
        // Nothing in `x-convoy` is ignored with a note: `ConvoyKey` has no
        // ignored keys.
        let mut notes = Vec::new();
        let mut probes = Vec::new();
        let mut update = None;
        while let Some(key) = next_key::<A, ConvoyKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                ConvoyKey::Probes => probes = value(&mut map, ProbesSeed)?.unwrap_or_default(),
                ConvoyKey::Update => update = value(&mut map, ConvoyUpdateSeed)?,
            }
        }
        Ok(Convoy { probes, update })
    }
}

/// `x-convoy.probes`: a list of probes with distinct names.
struct ProbesSeed;

impl<'de> DeserializeSeed<'de> for ProbesSeed {
    type Value = Vec<ProbeSpec>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ProbesSeed {
    type Value = Vec<ProbeSpec>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of probes, each with one of `http:`, `tcp:` or `exec:`")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut probes: Vec<ProbeSpec> = Vec::new();
        loop {
            let taken: Vec<&str> = probes.iter().map(|p| p.name.as_str()).collect();
            let Some(probe) = seq.next_element_seed(ProbeSeed { taken: &taken })? else {
                break;
            };
            probes.push(probe);
        }
        Ok(probes)
    }
}

/// One probe. `taken`: the names of the probes before it.
struct ProbeSeed<'a> {
    taken: &'a [&'a str],
}

impl<'de> DeserializeSeed<'de> for ProbeSeed<'_> {
    type Value = ProbeSpec;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ProbeSpec, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ProbeSeed<'_> {
    type Value = ProbeSpec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a probe: a mapping with one of `http:`, `tcp:` or `exec:`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ProbeSpec, A::Error> {
        let mut seen = Vec::new();
        let mut notes = Vec::new();
        let mut name = None;
        let mut check: Option<ProbeCheck> = None;
        let mut probe = ProbeSpec {
            name: String::new(),
            check: ProbeCheck::Tcp { port: 0 },
            interval_ms: 0,
            timeout_ms: 0,
            failure_threshold: 0,
            success_threshold: 0,
            start_period_ms: 0,
        };
        let positive = || scalar("a duration such as `5s`", values::positive_duration_ms);
        let threshold = || scalar("a number, at least 1", values::threshold);
        while let Some(key) = next_key::<A, ProbeKey>(&mut map, &mut seen, &mut notes)? {
            let first = check.as_ref().map(ProbeCheck::kind);
            match key {
                ProbeKey::Name => {
                    name = value(&mut map, scalar("a probe name", values::probe_name))?
                }
                ProbeKey::Http => {
                    if let Some(http) = value(&mut map, HttpProbeSeed { first })? {
                        check = Some(http);
                    }
                }
                ProbeKey::Tcp => {
                    if let Some(tcp) = value(&mut map, TcpProbeSeed { first })? {
                        check = Some(tcp);
                    }
                }
                ProbeKey::Exec => {
                    if let Some(exec) = value(&mut map, ExecProbeSeed { first })? {
                        check = Some(exec);
                    }
                }
                ProbeKey::Interval => probe.interval_ms = value(&mut map, positive())?.unwrap_or(0),
                ProbeKey::Timeout => probe.timeout_ms = value(&mut map, positive())?.unwrap_or(0),
                ProbeKey::FailureThreshold => {
                    probe.failure_threshold = value(&mut map, threshold())?.unwrap_or(0)
                }
                ProbeKey::SuccessThreshold => {
                    probe.success_threshold = value(&mut map, threshold())?.unwrap_or(0)
                }
                ProbeKey::StartPeriod => {
                    probe.start_period_ms = value(
                        &mut map,
                        scalar("a duration such as `30s`", values::duration_ms),
                    )?
                    .unwrap_or(0)
                }
            }
        }
        let check = check.ok_or_else(|| {
            de::Error::custom("a probe needs one check: `http:`, `tcp:` or `exec:`")
        })?;
        probe.name = name.unwrap_or_else(|| check.kind().to_owned());
        if self.taken.contains(&probe.name.as_str()) {
            return Err(de::Error::custom(format!(
                "another probe is already named `{}`: give each probe its own `name:`",
                probe.name
            )));
        }
        probe.check = check;
        Ok(probe)
    }
}

/// Refuses a second check in one probe; `first` is the one already read.
fn one_check<E: de::Error>(first: Option<&str>) -> Result<(), E> {
    match first {
        Some(first) => Err(E::custom(format!(
            "a probe runs one check and this one already has `{first}`: \
             write a probe for each check"
        ))),
        None => Ok(()),
    }
}

/// `http: {port, path, expect_status}`.
struct HttpProbeSeed {
    first: Option<&'static str>,
}

impl<'de> DeserializeSeed<'de> for HttpProbeSeed {
    type Value = ProbeCheck;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ProbeCheck, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HttpProbeSeed {
    type Value = ProbeCheck;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping such as `{port: 8080, path: /healthz}`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ProbeCheck, A::Error> {
        one_check(self.first)?;
        let mut seen = Vec::new();
        let mut notes = Vec::new();
        let mut port = None;
        let mut path = String::new();
        let mut expect_status = 0;
        while let Some(key) = next_key::<A, HttpProbeKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                HttpProbeKey::Port => {
                    port = value(&mut map, scalar("a port number", values::target_port))?
                }
                HttpProbeKey::Path => {
                    path = value(
                        &mut map,
                        scalar("a path such as `/healthz`", values::http_path),
                    )?
                    .unwrap_or_default();
                }
                HttpProbeKey::ExpectStatus => {
                    expect_status =
                        value(&mut map, scalar("an HTTP status code", values::http_status))?
                            .unwrap_or(0);
                }
            }
        }
        Ok(ProbeCheck::Http {
            port: port.ok_or_else(|| de::Error::missing_field("port"))?,
            path,
            expect_status,
        })
    }
}

/// `tcp: {port}`.
struct TcpProbeSeed {
    first: Option<&'static str>,
}

impl<'de> DeserializeSeed<'de> for TcpProbeSeed {
    type Value = ProbeCheck;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ProbeCheck, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TcpProbeSeed {
    type Value = ProbeCheck;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping such as `{port: 5432}`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ProbeCheck, A::Error> {
        one_check(self.first)?;
        let mut seen = Vec::new();
        let mut notes = Vec::new();
        let mut port = None;
        while let Some(key) = next_key::<A, TcpProbeKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                TcpProbeKey::Port => {
                    port = value(&mut map, scalar("a port number", values::target_port))?
                }
            }
        }
        Ok(ProbeCheck::Tcp {
            port: port.ok_or_else(|| de::Error::missing_field("port"))?,
        })
    }
}

/// `exec: [program, args...]`, run in the container without a shell.
struct ExecProbeSeed {
    first: Option<&'static str>,
}

impl<'de> DeserializeSeed<'de> for ExecProbeSeed {
    type Value = ProbeCheck;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ProbeCheck, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ExecProbeSeed {
    type Value = ProbeCheck;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list: the program to run in the container and its arguments")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ProbeCheck, A::Error> {
        one_check(self.first)?;
        let mut command = Vec::new();
        while let Some(arg) = seq.next_element_seed(text("an argument"))? {
            command.push(arg);
        }
        if command.first().is_none_or(|program| program.is_empty()) {
            return Err(de::Error::custom(
                "the command is empty: give the program to run and its arguments",
            ));
        }
        Ok(ProbeCheck::Exec { command })
    }
}

// ---- deploy ----

struct Deploy {
    mode: DeployMode,
    replicas: u32,
    /// Whether `replicas` was written, for messages.
    replicas_written: bool,
    constraints: Vec<Constraint>,
    restart: Option<RestartSpec>,
    update: Option<UpdateConfig>,
    notes: Vec<Note>,
}

struct DeploySeed;

impl<'de> DeserializeSeed<'de> for DeploySeed {
    type Value = Deploy;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Deploy, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DeploySeed {
    type Value = Deploy;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping such as `replicas: 2`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Deploy, A::Error> {
        let mut seen = Vec::new();
        let mut notes = Vec::new();
        let mut mode = None;
        let mut replicas = None;
        let mut constraints = Vec::new();
        let mut restart = None;
        let mut update = None;
        while let Some(key) = next_key::<A, DeployKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                // `replicas` and `mode: global` exclude each other; whichever
                // comes second is the error, so it points at a line.
                DeployKey::Mode => {
                    let has_replicas = replicas.is_some();
                    mode = value(
                        &mut map,
                        scalar("`replicated` or `global`", |s: &str| {
                            match values::mode(s)? {
                            DeployMode::Global if has_replicas => Err(
                                "`global` runs one instance on every matching node, so it cannot be \
                                 combined with `replicas`"
                                    .to_owned(),
                            ),
                            mode => Ok(mode),
                        }
                        }),
                    )?;
                }
                DeployKey::Replicas => {
                    let global = mode == Some(DeployMode::Global);
                    replicas = value(
                        &mut map,
                        scalar("a number of replicas", |s: &str| {
                            if global {
                                return Err(
                                    "cannot be set with `mode: global`, which runs one instance \
                                            on every matching node"
                                        .to_owned(),
                                );
                            }
                            values::count(s)
                        }),
                    )?;
                }
                DeployKey::Placement => {
                    if let Some((read, placement_notes)) = value(&mut map, PlacementSeed)? {
                        constraints = read;
                        nest(
                            &mut notes,
                            Seg::Key("placement".to_owned()),
                            placement_notes,
                        );
                    }
                }
                DeployKey::RestartPolicy => {
                    if let Some((policy, policy_notes)) = value(&mut map, RestartPolicySeed)? {
                        restart = Some(policy);
                        nest(
                            &mut notes,
                            Seg::Key("restart_policy".to_owned()),
                            policy_notes,
                        );
                    }
                }
                DeployKey::UpdateConfig => {
                    update = value(&mut map, UpdateConfigSeed { rollback: false })?;
                }
                DeployKey::RollbackConfig => {
                    // Read for its errors; the rollout controller rolls back
                    // under the same gates as it rolls forward.
                    if value(&mut map, UpdateConfigSeed { rollback: true })?.is_some() {
                        notes.push(Note::new(
                            "rollback_config",
                            "Convoy rolls back under update_config's gates; rollback_config is \
                             ignored",
                        ));
                    }
                }
            }
        }
        Ok(Deploy {
            mode: mode.unwrap_or_default(),
            replicas: replicas.unwrap_or(1),
            replicas_written: replicas.is_some(),
            constraints,
            restart,
            update,
            notes,
        })
    }
}

struct PlacementSeed;

impl<'de> DeserializeSeed<'de> for PlacementSeed {
    type Value = (Vec<Constraint>, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PlacementSeed {
    type Value = (Vec<Constraint>, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping with `constraints:`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Vec::new();
        let mut notes = Vec::new();
        let mut constraints = Vec::new();
        while let Some(key) = next_key::<A, PlacementKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                PlacementKey::Constraints => {
                    constraints = value(
                        &mut map,
                        list("a list of constraints", |_| {
                            scalar(
                                "a constraint such as `node.labels.zone == eu`",
                                |s: &str| s.parse(),
                            )
                        }),
                    )?
                    .unwrap_or_default();
                }
            }
        }
        Ok((constraints, notes))
    }
}

struct RestartPolicySeed;

impl<'de> DeserializeSeed<'de> for RestartPolicySeed {
    type Value = (RestartSpec, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RestartPolicySeed {
    type Value = (RestartSpec, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping with `condition:` and `max_attempts:`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Vec::new();
        let mut notes = Vec::new();
        let mut policy = RestartSpec::default();
        while let Some(key) = next_key::<A, RestartPolicyKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                RestartPolicyKey::Condition => {
                    policy.condition = value(
                        &mut map,
                        scalar("`none`, `on-failure` or `any`", values::condition),
                    )?
                    .unwrap_or(RestartCondition::Any);
                }
                RestartPolicyKey::MaxAttempts => {
                    policy.max_attempts =
                        value(&mut map, scalar("a number of attempts", values::count))?
                            .unwrap_or(0);
                }
            }
        }
        Ok((policy, notes))
    }
}

// ---- update strategy ----

/// `deploy.update_config` or `deploy.rollback_config`, as written: `None`
/// where a key is not.
#[derive(Default)]
struct UpdateConfig {
    parallelism: Option<u32>,
    delay_ms: Option<u64>,
    failure_action: Option<FailureAction>,
    monitor_ms: Option<u64>,
    max_failure_permille: Option<u32>,
    order: Option<UpdateOrder>,
}

/// `rollback`: reading `rollback_config`, whose failure action cannot be
/// another rollback.
struct UpdateConfigSeed {
    rollback: bool,
}

impl<'de> DeserializeSeed<'de> for UpdateConfigSeed {
    type Value = UpdateConfig;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<UpdateConfig, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for UpdateConfigSeed {
    type Value = UpdateConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping such as `{parallelism: 1, delay: 10s}`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UpdateConfig, A::Error> {
        let mut seen = Vec::new();
        // `UpdateConfigKey` ignores nothing: no notes come back.
        let mut notes = Vec::new();
        let mut config = UpdateConfig::default();
        let rollback = self.rollback;
        let duration = || scalar("a duration such as `10s`", values::duration_ms);
        while let Some(key) = next_key::<A, UpdateConfigKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                UpdateConfigKey::Parallelism => {
                    config.parallelism = value(
                        &mut map,
                        scalar("a number of instances, 0 for all", values::parallelism),
                    )?;
                }
                UpdateConfigKey::Delay => config.delay_ms = value(&mut map, duration())?,
                UpdateConfigKey::FailureAction => {
                    let expecting = if rollback {
                        "`pause` or `continue`"
                    } else {
                        "`rollback`, `pause` or `continue`"
                    };
                    config.failure_action = value(
                        &mut map,
                        scalar(expecting, |s: &str| values::failure_action(s, rollback)),
                    )?;
                }
                UpdateConfigKey::Monitor => config.monitor_ms = value(&mut map, duration())?,
                UpdateConfigKey::MaxFailureRatio => {
                    config.max_failure_permille = value(
                        &mut map,
                        scalar("a fraction from 0 to 1", values::failure_ratio),
                    )?;
                }
                UpdateConfigKey::Order => {
                    config.order = value(
                        &mut map,
                        scalar("`stop-first` or `start-first`", values::update_order),
                    )?;
                }
            }
        }
        Ok(config)
    }
}

/// `x-convoy.update`, as written: `None` where a key is not.
#[derive(Default)]
struct ConvoyUpdate {
    strategy: Option<Strategy>,
    max_parallel: Option<u32>,
    delay_ms: Option<u64>,
    min_healthy_time_ms: Option<u64>,
    healthy_deadline_ms: Option<u64>,
    progress_deadline_ms: Option<u64>,
    order: Option<UpdateOrder>,
    auto_rollback: Option<bool>,
    canaries: Option<u32>,
    auto_promote: Option<bool>,
    scale_down_delay_ms: Option<u64>,
}

struct ConvoyUpdateSeed;

impl<'de> DeserializeSeed<'de> for ConvoyUpdateSeed {
    type Value = ConvoyUpdate;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ConvoyUpdate, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ConvoyUpdateSeed {
    type Value = ConvoyUpdate;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping such as `{strategy: canary, canaries: 1}`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ConvoyUpdate, A::Error> {
        let mut seen = Vec::new();
        // `ConvoyUpdateKey` ignores nothing: no notes come back.
        let mut notes = Vec::new();
        let mut update = ConvoyUpdate::default();
        let duration = || scalar("a duration such as `30s`", values::duration_ms);
        let positive = || scalar("a duration such as `5m`", values::positive_duration_ms);
        let boolean = || scalar("`true` or `false`", values::boolean);
        while let Some(key) = next_key::<A, ConvoyUpdateKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                ConvoyUpdateKey::Strategy => {
                    update.strategy = value(
                        &mut map,
                        scalar("`rolling`, `canary` or `blue-green`", values::strategy),
                    )?;
                }
                ConvoyUpdateKey::MaxParallel => {
                    update.max_parallel = value(
                        &mut map,
                        scalar("a number of instances, 0 for all", values::parallelism),
                    )?;
                }
                ConvoyUpdateKey::Delay => update.delay_ms = value(&mut map, duration())?,
                ConvoyUpdateKey::MinHealthyTime => {
                    update.min_healthy_time_ms = value(&mut map, duration())?
                }
                // A zero deadline would fail every instance, every rollout.
                ConvoyUpdateKey::HealthyDeadline => {
                    update.healthy_deadline_ms = value(&mut map, positive())?
                }
                ConvoyUpdateKey::ProgressDeadline => {
                    update.progress_deadline_ms = value(&mut map, positive())?
                }
                ConvoyUpdateKey::Order => {
                    update.order = value(
                        &mut map,
                        scalar("`stop-first` or `start-first`", values::update_order),
                    )?;
                }
                ConvoyUpdateKey::AutoRollback => update.auto_rollback = value(&mut map, boolean())?,
                ConvoyUpdateKey::Canaries => {
                    update.canaries = value(
                        &mut map,
                        scalar("a number of instances, at least 1", values::canaries),
                    )?;
                }
                ConvoyUpdateKey::AutoPromote => update.auto_promote = value(&mut map, boolean())?,
                ConvoyUpdateKey::ScaleDownDelay => {
                    update.scale_down_delay_ms = value(&mut map, duration())?
                }
            }
        }
        Ok(update)
    }
}

/// The service's update policy from `deploy.update_config` and
/// `x-convoy.update`, or the first key that does not fit with the others:
/// its path from the service, and why.
///
/// One setting written in both blocks is an error naming both, rather than
/// one block winning: a reader of the file would otherwise have to know the
/// rule to tell which applies.
fn update_policy(
    compose: &UpdateConfig,
    convoy: &ConvoyUpdate,
    deploy: &DeploySpec,
    replicas_written: bool,
) -> Result<UpdatePolicy, Note> {
    let path = |block: [&str; 2], key: &str| -> Vec<Seg> {
        [block[0], block[1], key]
            .into_iter()
            .map(|seg| Seg::Key(seg.to_owned()))
            .collect()
    };
    let ours = |key: &str| path(["x-convoy", "update"], key);
    let compose_key = |key: &str| path(["deploy", "update_config"], key);
    let problem = |path: Vec<Seg>, message: String| Note { path, message };

    // The settings both blocks have: ours, whether written, Compose's,
    // whether written, and what they set.
    let same_setting = [
        (
            "max_parallel",
            convoy.max_parallel.is_some(),
            "parallelism",
            compose.parallelism.is_some(),
            "how many instances are replaced at a time",
        ),
        (
            "delay",
            convoy.delay_ms.is_some(),
            "delay",
            compose.delay_ms.is_some(),
            "the pause between batches",
        ),
        (
            "min_healthy_time",
            convoy.min_healthy_time_ms.is_some(),
            "monitor",
            compose.monitor_ms.is_some(),
            "how long a new instance must stay healthy",
        ),
        (
            "order",
            convoy.order.is_some(),
            "order",
            compose.order.is_some(),
            "whether an old instance stops before its replacement starts",
        ),
        (
            "auto_rollback",
            convoy.auto_rollback.is_some(),
            "failure_action",
            compose.failure_action.is_some(),
            "what a failed rollout does",
        ),
    ];
    for (key, ours_written, compose_name, compose_written, what) in same_setting {
        if ours_written && compose_written {
            return Err(problem(
                ours(key),
                format!(
                    "both this and `deploy.update_config.{compose_name}` set {what}: keep one \
                     of the two"
                ),
            ));
        }
    }

    let mut policy = UpdatePolicy::default();
    if let Some(n) = compose.parallelism.or(convoy.max_parallel) {
        policy.max_parallel = n;
    }
    if let Some(ms) = compose.delay_ms.or(convoy.delay_ms) {
        policy.delay_ms = ms;
    }
    if let Some(ms) = compose.monitor_ms.or(convoy.min_healthy_time_ms) {
        policy.min_healthy_time_ms = ms;
    }
    if let Some(order) = compose.order.or(convoy.order) {
        policy.order = order;
    }
    if let Some(action) = compose.failure_action {
        policy.failure_action = action;
        policy.auto_rollback = action == FailureAction::Rollback;
    }
    // `auto_rollback: false` keeps the failure action: a failed rollout
    // stops and stays as it is.
    if let Some(auto) = convoy.auto_rollback {
        policy.auto_rollback = auto;
    }
    if let Some(permille) = compose.max_failure_permille {
        policy.max_failure_permille = permille;
    }
    if let Some(ms) = convoy.healthy_deadline_ms {
        policy.healthy_deadline_ms = ms;
    }
    if let Some(ms) = convoy.progress_deadline_ms {
        policy.progress_deadline_ms = ms;
    }
    if let Some(strategy) = convoy.strategy {
        policy.strategy = strategy;
    }
    if let Some(auto) = convoy.auto_promote {
        policy.auto_promote = auto;
    }
    if let Some(ms) = convoy.scale_down_delay_ms {
        policy.scale_down_delay_ms = ms;
    }

    // Settings that belong to other strategies.
    let strategy = policy.strategy;
    let name = values::strategy_name(strategy);
    let strategy_here = match convoy.strategy {
        Some(_) => format!("`{name}`"),
        None => format!("`{name}` (the default)"),
    };
    if deploy.mode == DeployMode::Global && strategy != Strategy::Rolling {
        return Err(problem(
            ours("strategy"),
            format!(
                "`{name}` is not supported with `deploy.mode: global`, which runs one instance \
                 on every matching node: use `rolling`"
            ),
        ));
    }
    match (convoy.canaries, strategy) {
        (Some(_), Strategy::Rolling | Strategy::BlueGreen) => {
            return Err(problem(
                ours("canaries"),
                format!("is for `strategy: canary`, and the strategy here is {strategy_here}"),
            ));
        }
        (Some(n), Strategy::Canary) => {
            if deploy.mode == DeployMode::Replicated && n > deploy.replicas {
                let replicas = if replicas_written {
                    format!("`deploy.replicas` is {}", deploy.replicas)
                } else {
                    "`deploy.replicas` is not set, so 1".to_owned()
                };
                return Err(problem(
                    ours("canaries"),
                    format!(
                        "{n} canaries are more instances than the service runs ({replicas}): \
                         give at most that many"
                    ),
                ));
            }
            policy.canaries = n;
        }
        // One canary unless told otherwise: a canary rollout without any
        // would wait for `promote` before it replaced anything.
        (None, Strategy::Canary) => policy.canaries = 1,
        (None, Strategy::Rolling | Strategy::BlueGreen) => {}
    }
    if convoy.auto_promote.is_some() && strategy == Strategy::Rolling {
        return Err(problem(
            ours("auto_promote"),
            format!(
                "is for `strategy: canary` or `blue-green`, and the strategy here is \
                 {strategy_here}"
            ),
        ));
    }
    if convoy.scale_down_delay_ms.is_some() && strategy != Strategy::BlueGreen {
        return Err(problem(
            ours("scale_down_delay"),
            format!("is for `strategy: blue-green`, and the strategy here is {strategy_here}"),
        ));
    }

    // Deadlines that no instance could meet. The healthy deadline is checked
    // only when written: the controller measures it until an instance is
    // first healthy, so a long `monitor` with the default deadline works;
    // one written shorter than the min healthy time is most likely the two
    // mixed up.
    let min_healthy = if convoy.min_healthy_time_ms.is_some() {
        Some((
            "`x-convoy.update.min_healthy_time`",
            ours("min_healthy_time"),
        ))
    } else if compose.monitor_ms.is_some() {
        Some(("`deploy.update_config.monitor`", compose_key("monitor")))
    } else {
        None
    };
    let show = values::show_duration;
    if let (Some(deadline), Some((min_name, _))) = (convoy.healthy_deadline_ms, &min_healthy) {
        if deadline < policy.min_healthy_time_ms {
            return Err(problem(
                ours("healthy_deadline"),
                format!(
                    "{} is shorter than the min healthy time ({} from {min_name}): give the \
                     deadline at least that long",
                    show(deadline),
                    show(policy.min_healthy_time_ms),
                ),
            ));
        }
    }
    // An instance counts as progress only after `delay` and then
    // `min_healthy_time`: a progress deadline not longer than that fails
    // every rollout.
    let step = policy.min_healthy_time_ms + policy.delay_ms;
    if step >= policy.progress_deadline_ms {
        let delay_key = if convoy.delay_ms.is_some() {
            ours("delay")
        } else {
            compose_key("delay")
        };
        let at = if convoy.progress_deadline_ms.is_some() {
            ours("progress_deadline")
        } else {
            min_healthy.map_or(delay_key, |(_, path)| path)
        };
        let deadline = match convoy.progress_deadline_ms {
            Some(ms) => show(ms),
            None => format!(
                "{}, the default",
                show(UpdatePolicy::default().progress_deadline_ms)
            ),
        };
        return Err(problem(
            at,
            format!(
                "a new instance counts as progress after the delay ({}) and the min healthy time \
                 ({}), which together are not shorter than the progress deadline ({deadline}): \
                 every rollout would fail; make `x-convoy.update.progress_deadline` longer",
                show(policy.delay_ms),
                show(policy.min_healthy_time_ms),
            ),
        ));
    }
    Ok(policy)
}

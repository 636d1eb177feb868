//! The keys of each mapping of a Compose file: those Convoy reads, and the
//! Compose keys it does not support yet, which it skips with a warning.
//! Supporting a Compose key starts by moving it from `ignored` to the keys.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::{Note, UNSUPPORTED};

/// The keys of one kind of mapping: those Convoy reads, and the Compose keys
/// it ignores with a warning. `x-*` extension keys are ignored silently; any
/// other key is an error.
pub(super) trait KeySet: Sized {
    const SUPPORTED: &'static [&'static str];
    const IGNORED: &'static [&'static str];
    /// Compose keys Convoy refuses, and why (the error says it).
    const REFUSED: &'static [(&'static str, &'static str)] = &[];
    /// Compose keys read only to refuse the values that give a container
    /// host access (`host_access.rs`); their other values are ignored with
    /// a warning.
    #[allow(dead_code)]
    const CHECKED: &'static [&'static str] = &[];
    fn from_key(key: &str) -> Option<Self>;
}

/// `Name { Variant = "key", ... }`: the keys read; `checked { ... }`:
/// Compose keys read only to refuse some of their values (not listed as
/// supported); `ignored [...]`: skipped with a warning; `refused [...]`:
/// errors, with why.
macro_rules! key_set {
    ($name:ident { $($variant:ident = $key:literal),* $(,)? }
        $(checked { $($checked:ident = $checked_key:literal),* $(,)? })?
        ignored [$($ignored:literal),* $(,)?]
        $(refused [$($refused:literal => $why:expr),* $(,)?])?) => {
        #[derive(Clone, Copy)]
        pub(super) enum $name {
            $($variant,)*
            $($($checked,)*)?
        }

        impl $name {
            /// The key as written in the file.
            #[allow(dead_code)]
            pub(super) fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $key,)*
                    $($(Self::$checked => $checked_key,)*)?
                }
            }
        }

        impl KeySet for $name {
            const SUPPORTED: &'static [&'static str] = &[$($key),*];
            const IGNORED: &'static [&'static str] = &[$($ignored),*];
            $(const REFUSED: &'static [(&'static str, &'static str)] = &[$(($refused, $why)),*];)?
            $(const CHECKED: &'static [&'static str] = &[$($checked_key),*];)?
            fn from_key(key: &str) -> Option<Self> {
                match key {
                    $($key => Some(Self::$variant),)*
                    $($($checked_key => Some(Self::$checked),)*)?
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
    Networks = "networks",
    Volumes = "volumes",
    Configs = "configs",
    Secrets = "secrets",
    Convoy = "x-convoy",
} ignored ["include"]);

key_set!(ServiceKey {
    Image = "image",
    Command = "command",
    Entrypoint = "entrypoint",
    Environment = "environment",
    Ports = "ports",
    Labels = "labels",
    Volumes = "volumes",
    Networks = "networks",
    Hostname = "hostname",
    ExtraHosts = "extra_hosts",
    Dns = "dns",
    Expose = "expose",
    WorkingDir = "working_dir",
    User = "user",
    Restart = "restart",
    StopSignal = "stop_signal",
    StopGracePeriod = "stop_grace_period",
    Healthcheck = "healthcheck",
    Deploy = "deploy",
    Profiles = "profiles",
    EnvFile = "env_file",
    ReadOnly = "read_only",
    Tmpfs = "tmpfs",
    Init = "init",
    CapDrop = "cap_drop",
    Tty = "tty",
    StdinOpen = "stdin_open",
    Sysctls = "sysctls",
    Logging = "logging",
    PullPolicy = "pull_policy",
    Platform = "platform",
    DependsOn = "depends_on",
    Configs = "configs",
    Secrets = "secrets",
    Cpus = "cpus",
    MemLimit = "mem_limit",
    MemReservation = "mem_reservation",
    PidsLimit = "pids_limit",
    ShmSize = "shm_size",
    Ulimits = "ulimits",
    Gpus = "gpus",
    Convoy = "x-convoy",
    // Host access (`host_access.rs`): granted per node by an admin.
    Privileged = "privileged",
    CapAdd = "cap_add",
    Devices = "devices",
    Pid = "pid",
    Ipc = "ipc",
    Uts = "uts",
    UsernsMode = "userns_mode",
    NetworkMode = "network_mode",
    SecurityOpt = "security_opt",
} ignored [
    "annotations", "attach", "blkio_config", "cgroup_parent",
    "container_name", "cpu_count", "cpu_percent", "cpu_period", "cpu_quota",
    "cpu_rt_period", "cpu_rt_runtime", "cpu_shares", "cpuset", "credential_spec",
    "develop", "device_cgroup_rules", "dns_opt", "dns_search",
    "domainname", "extends", "external_links",
    "group_add", "isolation", "links",
    "mac_address", "mem_swappiness", "memswap_limit",
    "oom_kill_disable", "oom_score_adj",
    "post_start", "pre_stop",
    "runtime", "scale", "storage_opt",
    "volumes_from",
] refused [
    "build" => "Convoy deploys images built elsewhere: build and push the image \
                (e.g. `docker build -t REGISTRY/APP:TAG . && docker push REGISTRY/APP:TAG`), \
                then name it in `image:` and remove `build:`",
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
    Secrets = "secrets",
    Convoy = "x-convoy",
} ignored []);

key_set!(DeployKey {
    Mode = "mode",
    Replicas = "replicas",
    Placement = "placement",
    RestartPolicy = "restart_policy",
    UpdateConfig = "update_config",
    RollbackConfig = "rollback_config",
    Resources = "resources",
    Labels = "labels",
} ignored ["endpoint_mode"]);

key_set!(ResourcesKey {
    Limits = "limits",
    Reservations = "reservations",
} ignored []);

key_set!(LimitsKey {
    Cpus = "cpus",
    Memory = "memory",
    Pids = "pids",
} ignored []);

key_set!(ReservationsKey {
    Cpus = "cpus",
    Memory = "memory",
    Devices = "devices",
} ignored ["generic_resources"]);

// An entry of `reservations.devices` (and of `gpus:` as a list).
key_set!(DeviceKey {
    Driver = "driver",
    Count = "count",
    DeviceIds = "device_ids",
    Capabilities = "capabilities",
} ignored [] refused [
    "options" => "driver options are not supported: remove `options` (the container would \
                  otherwise run without what they ask for)",
]);

key_set!(EnvFileKey {
    Path = "path",
    Required = "required",
    Format = "format",
} ignored []);

// An entry of a service's `depends_on` mapping.
key_set!(DependsOnKey {
    Condition = "condition",
    Required = "required",
    Restart = "restart",
} ignored []);

key_set!(LoggingKey {
    Driver = "driver",
    Options = "options",
} ignored []);

key_set!(UlimitKey {
    Soft = "soft",
    Hard = "hard",
} ignored []);

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
    Preferences = "preferences",
    MaxReplicasPerNode = "max_replicas_per_node",
} ignored []);

// An entry of `placement.preferences`: Compose has only `spread`.
key_set!(PreferenceKey {
    Spread = "spread",
} ignored []);

key_set!(RestartPolicyKey {
    Condition = "condition",
    MaxAttempts = "max_attempts",
    Delay = "delay",
    Window = "window",
} ignored []);

key_set!(HealthcheckKey {
    Test = "test",
    Interval = "interval",
    Timeout = "timeout",
    Retries = "retries",
    StartPeriod = "start_period",
    StartInterval = "start_interval",
    Disable = "disable",
} ignored []);

// `x-convoy` is Convoy's own block: every key in it is Convoy's, so an
// unknown one is a typo, never a Compose key to skip.
key_set!(ConvoyKey {
    Probes = "probes",
    Update = "update",
    SecretEnv = "secret_env",
    GpuSharing = "gpu_sharing",
    Swarm = "swarm",
    RescheduleAfter = "reschedule_after",
    PreDeploy = "pre_deploy",
    Ingress = "ingress",
} ignored []);

// `x-convoy.pre_deploy`: a one-off command run before a rollout starts.
key_set!(PreDeployKey {
    Command = "command",
    Timeout = "timeout",
} ignored []);

// The top-level `x-convoy`: `environment` is the CLI's (read before
// sending), `swarm` the default of every entry of `services:`.
key_set!(TopConvoyKey {
    Environment = "environment",
    Swarm = "swarm",
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
    Analysis = "analysis",
    CanaryWeights = "canary_weights",
    CanaryPause = "canary_pause",
} ignored []);

key_set!(IngressKey {
    Routes = "routes",
    DrainTimeout = "drain_timeout",
    Tls = "tls",
    HttpsRedirect = "https_redirect",
} ignored []);

key_set!(IngressTlsKey {
    Hosts = "hosts",
    Certificate = "certificate",
    Key = "key",
} ignored []);

key_set!(IngressRouteKey {
    Host = "host",
    PathPrefix = "path_prefix",
    Port = "port",
} ignored []);

key_set!(AnalysisKey {
    Prometheus = "prometheus",
    Interval = "interval",
    FailureLimit = "failure_limit",
    Queries = "queries",
} ignored []);

key_set!(AnalysisQueryKey {
    Name = "name",
    Query = "query",
    Max = "max",
    Min = "min",
    Proxy = "proxy",
    MaxWorseThanStable = "max_worse_than_stable",
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

// An entry of the top-level `networks:`.
key_set!(NetworkKey {
    Driver = "driver",
    Internal = "internal",
    Labels = "labels",
    External = "external",
    Name = "name",
} ignored ["driver_opts", "attachable", "enable_ipv4", "enable_ipv6", "ipam"]);

// A network in a service's `networks:` mapping.
key_set!(ServiceNetworkKey {
    Aliases = "aliases",
} ignored [
    "ipv4_address", "ipv6_address", "link_local_ips", "mac_address", "driver_opts",
    "priority", "gw_priority", "interface_name",
]);

// An entry of the top-level `configs:`.
key_set!(ConfigKey {
    File = "file",
    Content = "content",
    Environment = "environment",
    Name = "name",
} ignored ["template_driver"] refused [
    "external" => "Convoy has no Swarm configs yet, so it cannot use an existing one by name: \
                   give the config's content with `file:`, `content:` or `environment:`",
]);

// An entry of a service's `configs:` or `secrets:` in the long syntax.
key_set!(ServiceMountKey {
    Source = "source",
    Target = "target",
    Uid = "uid",
    Gid = "gid",
    Mode = "mode",
} ignored []);

// An entry of the top-level `secrets:`. Its `x-convoy` is read (Convoy's
// generate option), not skipped as an extension key.
key_set!(SecretKey {
    File = "file",
    Environment = "environment",
    External = "external",
    Name = "name",
    Convoy = "x-convoy",
} ignored ["labels", "template_driver"] refused [
    "driver" => "Convoy keeps secrets in its own store, not in a secrets driver: give the value \
                 with `file:` or `environment:`, use `external: true` for one set with \
                 `convoy secret set`, or `x-convoy: {generate: true}`",
    "driver_opts" => "Convoy keeps secrets in its own store, not in a secrets driver: remove \
                      `driver_opts`",
]);

// A top-level secret's `x-convoy`.
key_set!(SecretConvoyKey {
    Generate = "generate",
} ignored []);

// `x-convoy.generate` of a top-level secret, as a mapping.
key_set!(SecretGenerateKey {
    Length = "length",
    Charset = "charset",
} ignored []);

// An entry of a unit's `secrets:` in the long syntax: a systemd credential.
key_set!(UnitSecretKey {
    Source = "source",
    Target = "target",
} ignored [] refused [
    "uid" => "a unit's credential belongs to the unit's user, as systemd sets it: remove `uid`",
    "gid" => "a unit's credential belongs to the unit's user, as systemd sets it: remove `gid`",
    "mode" => "systemd sets a credential's mode (readable by the unit only): remove `mode`",
]);

// An entry of the top-level `volumes:`.
key_set!(VolumeKey {
    Name = "name",
    External = "external",
    Driver = "driver",
    DriverOpts = "driver_opts",
    Labels = "labels",
} ignored []);

// An entry of a service's `volumes` in the long syntax.
key_set!(ServiceVolumeKey {
    Type = "type",
    Source = "source",
    Target = "target",
    ReadOnly = "read_only",
    Bind = "bind",
    Volume = "volume",
    Tmpfs = "tmpfs",
} ignored ["consistency"]);

key_set!(BindKey {
    Propagation = "propagation",
    CreateHostPath = "create_host_path",
} ignored [] refused [
    "selinux" => "`selinux` relabels the host's files for SELinux, which Convoy does not do: \
                  remove it",
]);

key_set!(MountVolumeKey {
    Nocopy = "nocopy",
} ignored [] refused [
    "subpath" => "`subpath` needs Docker Engine 26 and Convoy supports Docker 20.10: mount \
                  the whole volume and use the subdirectory's path in the container",
]);

key_set!(MountTmpfsKey {
    Size = "size",
    Mode = "mode",
} ignored []);

key_set!(PortKey {
    Target = "target",
    Published = "published",
    HostIp = "host_ip",
    Protocol = "protocol",
    Mode = "mode",
} ignored ["name", "app_protocol"]);

/// The keys a mapping has read so far: a hash set, so that a mapping with
/// many keys costs time linear in their number.
pub(super) type Seen = std::collections::HashSet<String>;

/// Remembers `key`, refusing it the second time. Done while the key is read,
/// so the error points at the repeated key.
pub(super) fn first_time(seen: &mut Seen, key: &str, what: &str) -> Result<(), String> {
    if seen.contains(key) {
        return Err(format!("duplicate {what} `{key}`"));
    }
    seen.insert(key.to_owned());
    Ok(())
}

enum Key<K> {
    Known(K),
    Ignored(&'static str),
    Extension,
}

struct KeySeed<'a, K> {
    seen: &'a mut Seen,
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
        } else if let Some((_, why)) = K::REFUSED.iter().find(|(k, _)| *k == key) {
            Err(E::custom(why))
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
pub(super) fn next_key<'de, A: MapAccess<'de>, K: KeySet>(
    map: &mut A,
    seen: &mut Seen,
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

//! The node plan, checked where it enters the agent (from the coordinator,
//! from `plan.pb`): every workload has an id of its own and exactly one
//! runtime spec, a container has an image. Reconcilers only ever see a
//! `Plan`; an invalid one is refused whole, with the workload and what is
//! wrong with it, and the plan in force stays.
//!
//! The runtime specs (`ContainerSpec`, `UnitSpec`) travel on as the wire
//! types: Docker's and systemd's side read them field by field, and a unit
//! spec a host cannot run is that workload's own failure (`units::file`),
//! not the whole plan's.
//!
//! The secret values a plan holds stay in memory (`SecretValues`, zeroed on
//! drop, `Debug` redacted); `to_stored` drops them, so `plan.pb` never holds
//! one. A workload naming a secret the plan lacks fails on its own, when it
//! is created (`crate::secrets`), not the whole plan.

use std::collections::HashMap;

use convoy_proto::{workload, ContainerSpec, NodePlan, RegistryAuth, SecretValue, Workload};

use crate::secrets::{self, SecretKey, SecretValues};

/// Why a plan was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPlan {
    #[error("workload #{position} of the plan has no id")]
    MissingId {
        /// 1-based, in the plan's order.
        position: usize,
    },
    #[error("workload `{id}` appears more than once in the plan (#{first} and #{again})")]
    DuplicateId {
        id: String,
        first: usize,
        again: usize,
    },
    #[error("workload `{id}` has no runtime spec: it needs a container or a unit")]
    MissingRuntime { id: String },
    #[error("workload `{id}` is a Swarm service without a name")]
    MissingSwarmName { id: String },
    #[error("workload `{id}` runs a container without an image")]
    MissingImage { id: String },
    #[error("registry login #{position} of the plan names no registry")]
    MissingRegistry {
        /// 1-based, in the plan's order.
        position: usize,
    },
    #[error("secret value #{position} of the plan has no name")]
    MissingSecretName {
        /// 1-based, in the plan's order.
        position: usize,
    },
    #[error("workload `{id}` uses a secret without a name")]
    UnnamedSecret { id: String },
    #[error("workload `{id}` has an ingress route {why}")]
    BadRoute { id: String, why: String },
}

/// A private registry's login, from the plan: kept in memory only (never
/// in `plan.pb`), and its `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryLogin {
    /// `HOST[:PORT]`, as image references name it; `docker.io` for Docker Hub.
    pub server: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryLogin")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A plan every reconciler can trust.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    generation: u64,
    /// Unique ids, each with exactly one runtime spec.
    workloads: Vec<Workload>,
    /// By registry (`HOST[:PORT]`).
    registry_logins: Vec<RegistryLogin>,
    /// The values of the secrets the workloads use; memory only.
    secrets: SecretValues,
    /// `NodePlan.swarm_driver`.
    swarm_driver: bool,
}

impl Plan {
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn workloads(&self) -> &[Workload] {
        &self.workloads
    }

    /// The workloads Docker runs.
    pub fn containers(&self) -> impl Iterator<Item = &Workload> {
        self.workloads
            .iter()
            .filter(|w| matches!(w.runtime, Some(workload::Runtime::Container(_))))
    }

    /// The Swarm services this node's agent drives.
    pub fn swarm_services(&self) -> impl Iterator<Item = &Workload> {
        self.workloads
            .iter()
            .filter(|w| matches!(w.runtime, Some(workload::Runtime::Swarm(_))))
    }

    /// Whether this node's agent drives its engine's Swarm
    /// (`NodePlan.swarm_driver`).
    pub fn swarm_driver(&self) -> bool {
        self.swarm_driver
    }

    /// The workloads systemd runs.
    pub fn units(&self) -> impl Iterator<Item = &Workload> {
        self.workloads
            .iter()
            .filter(|w| matches!(w.runtime, Some(workload::Runtime::Unit(_))))
    }

    /// The login the plan holds for the registry `image` is pulled from.
    pub fn registry_login(&self, image: &str) -> Option<&RegistryLogin> {
        let registry = registry_of(image);
        self.registry_logins.iter().find(|l| l.server == registry)
    }

    /// The secret values the plan holds.
    pub fn secret_values(&self) -> &SecretValues {
        &self.secrets
    }

    /// Every secret version the workloads reference.
    pub fn secret_refs(&self) -> std::collections::BTreeSet<SecretKey> {
        secrets::refs_of(&self.workloads)
    }

    /// The plan with `values` as its secret values (a stored plan, with
    /// the values read back from the node's cache).
    pub fn with_secret_values(mut self, values: SecretValues) -> Self {
        self.secrets = values;
        self
    }

    /// The plan as `plan.pb` holds it: the wire form without the registry
    /// logins and secret values, which stay in memory.
    pub fn to_stored(&self) -> NodePlan {
        NodePlan {
            generation: self.generation,
            workloads: self.workloads.clone(),
            registry_auths: Vec::new(),
            secret_values: Vec::new(),
            swarm_driver: self.swarm_driver,
        }
    }
}

impl TryFrom<NodePlan> for Plan {
    type Error = InvalidPlan;

    fn try_from(plan: NodePlan) -> Result<Self, InvalidPlan> {
        let NodePlan {
            generation,
            workloads,
            registry_auths,
            secret_values,
            swarm_driver,
        } = plan;
        let mut secrets = SecretValues::default();
        for (i, value) in secret_values.into_iter().enumerate() {
            let SecretValue {
                env,
                name,
                version,
                value,
            } = value;
            if name.is_empty() {
                return Err(InvalidPlan::MissingSecretName { position: i + 1 });
            }
            secrets.insert(SecretKey { env, name, version }, value);
        }
        let mut registry_logins: Vec<RegistryLogin> = Vec::with_capacity(registry_auths.len());
        for (i, auth) in registry_auths.into_iter().enumerate() {
            let RegistryAuth {
                server,
                username,
                password,
            } = auth;
            if server.is_empty() {
                return Err(InvalidPlan::MissingRegistry { position: i + 1 });
            }
            registry_logins.retain(|l| l.server != server);
            registry_logins.push(RegistryLogin {
                server,
                username,
                password,
            });
        }
        let mut seen: HashMap<String, usize> = HashMap::with_capacity(workloads.len());
        let mut checked = Vec::with_capacity(workloads.len());
        for (i, w) in workloads.into_iter().enumerate() {
            let position = i + 1;
            let w = workload_of(w, position)?;
            if let Some(first) = seen.insert(w.id.clone(), position) {
                return Err(InvalidPlan::DuplicateId {
                    id: w.id,
                    first,
                    again: position,
                });
            }
            checked.push(w);
        }
        Ok(Self {
            generation,
            workloads: checked,
            registry_logins,
            secrets,
            swarm_driver,
        })
    }
}

/// Checks one workload. Every field is named, so a field the proto gains
/// is a compile error here until someone decides what checking it needs.
fn workload_of(w: Workload, position: usize) -> Result<Workload, InvalidPlan> {
    let Workload {
        id,
        service,
        env,
        index,
        revision,
        spec_hash,
        probes,
        start_first,
        runtime,
        ingress,
    } = w;
    if id.is_empty() {
        return Err(InvalidPlan::MissingId { position });
    }
    let unnamed = |mounts: &[convoy_proto::SecretMount]| mounts.iter().any(|m| m.name.is_empty());
    let unnamed = match &runtime {
        Some(workload::Runtime::Container(spec)) => unnamed(&spec.secrets),
        Some(workload::Runtime::Unit(spec)) => unnamed(&spec.credentials),
        Some(workload::Runtime::Swarm(spec)) => {
            spec.container.as_ref().is_some_and(|c| unnamed(&c.secrets))
        }
        None => false,
    };
    if unnamed {
        return Err(InvalidPlan::UnnamedSecret { id });
    }
    let runtime = match runtime {
        None => return Err(InvalidPlan::MissingRuntime { id }),
        Some(workload::Runtime::Container(spec)) => {
            workload::Runtime::Container(container_of(spec, &id)?)
        }
        Some(workload::Runtime::Unit(spec)) => workload::Runtime::Unit(spec),
        Some(workload::Runtime::Swarm(spec)) => {
            if spec.name.is_empty() {
                return Err(InvalidPlan::MissingSwarmName { id });
            }
            match &spec.container {
                Some(c) if !c.image.is_empty() => {}
                _ => return Err(InvalidPlan::MissingImage { id }),
            }
            workload::Runtime::Swarm(spec)
        }
    };
    if let Some(ingress) = &ingress {
        for r in &ingress.routes {
            let convoy_proto::IngressRoute {
                host: _,
                path_prefix,
                port,
            } = r;
            let why = if !(1..=65535).contains(port) {
                Some(format!("to port {port}, out of range 1-65535"))
            } else if !path_prefix.is_empty() && !path_prefix.starts_with('/') {
                Some(format!(
                    "with path prefix `{path_prefix}`, not starting with `/`"
                ))
            } else {
                None
            };
            if let Some(why) = why {
                return Err(InvalidPlan::BadRoute { id, why });
            }
        }
    }
    Ok(Workload {
        id,
        service,
        env,
        index,
        revision,
        spec_hash,
        probes,
        start_first,
        runtime: Some(runtime),
        ingress,
    })
}

/// The registry an image reference pulls from, as Docker splits it
/// (`splitDockerDomain`): the first path part when it has a `.` or `:` or
/// is `localhost`, else Docker Hub (`docker.io`).
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            if first == "index.docker.io" {
                "docker.io".to_string()
            } else {
                first.to_string()
            }
        }
        _ => "docker.io".to_string(),
    }
}

fn container_of(spec: ContainerSpec, id: &str) -> Result<ContainerSpec, InvalidPlan> {
    if spec.image.trim().is_empty() {
        return Err(InvalidPlan::MissingImage { id: id.to_string() });
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use convoy_proto::UnitSpec;

    use super::*;

    fn container(id: &str, image: &str) -> Workload {
        Workload {
            id: id.into(),
            spec_hash: "h1".into(),
            runtime: Some(workload::Runtime::Container(ContainerSpec {
                image: image.into(),
                ..ContainerSpec::default()
            })),
            ..Workload::default()
        }
    }

    fn unit(id: &str) -> Workload {
        Workload {
            id: id.into(),
            runtime: Some(workload::Runtime::Unit(UnitSpec {
                unit_name: "convoy-web.service".into(),
                exec_start: vec!["/bin/true".into()],
                ..UnitSpec::default()
            })),
            ..Workload::default()
        }
    }

    fn plan(workloads: Vec<Workload>) -> NodePlan {
        NodePlan {
            generation: 7,
            workloads,
            ..Default::default()
        }
    }

    #[test]
    fn a_valid_plan_keeps_every_workload_in_order_and_splits_them_by_runtime() {
        let wire = plan(vec![
            container("a/web/1", "web:1"),
            unit("a/job/1"),
            container("a/web/2", "web:1"),
        ]);
        let p = Plan::try_from(wire.clone()).unwrap();
        assert_eq!(p.generation(), 7);
        assert_eq!(p.workloads(), wire.workloads.as_slice());
        let ids = |it: Vec<&Workload>| it.iter().map(|w| w.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(p.containers().collect()), ["a/web/1", "a/web/2"]);
        assert_eq!(ids(p.units().collect()), ["a/job/1"]);
        assert_eq!(p.to_stored(), wire);
    }

    fn with_secret(mut w: Workload, name: &str, version: u64) -> Workload {
        if let Some(workload::Runtime::Container(spec)) = &mut w.runtime {
            spec.secrets.push(convoy_proto::SecretMount {
                name: name.into(),
                version,
                target: format!("/run/secrets/{name}"),
                ..Default::default()
            });
        }
        w
    }

    fn value(env: &str, name: &str, version: u64, value: &[u8]) -> SecretValue {
        SecretValue {
            env: env.into(),
            name: name.into(),
            version,
            value: value.to_vec(),
        }
    }

    #[test]
    fn secret_values_stay_in_memory_and_debug_never_shows_them() {
        let mut w = with_secret(container("prod/web/1", "web:1"), "db", 3);
        w.env = "prod".into();
        let mut wire = plan(vec![w]);
        wire.secret_values = vec![value("prod", "db", 3, b"hunter2-canary")];
        let p = Plan::try_from(wire.clone()).unwrap();
        let key = SecretKey {
            env: "prod".into(),
            name: "db".into(),
            version: 3,
        };
        assert_eq!(p.secret_values().get(&key), Some(&b"hunter2-canary"[..]));
        assert_eq!(p.secret_refs().into_iter().collect::<Vec<_>>(), [key]);
        let text = format!("{p:?} {:#?}", p);
        assert!(!text.contains("hunter2-canary"), "{text}");
        assert!(text.contains("prod/db@v3"), "{text}");
        let stored = p.to_stored();
        assert!(stored.secret_values.is_empty());
        assert_eq!(stored.workloads, wire.workloads);
    }

    #[test]
    fn a_secret_without_a_name_is_refused() {
        let mut wire = plan(vec![]);
        wire.secret_values = vec![value("prod", "db", 1, b"x"), value("prod", "", 1, b"x")];
        let err = Plan::try_from(wire).unwrap_err();
        assert_eq!(err, InvalidPlan::MissingSecretName { position: 2 });
        let err = Plan::try_from(plan(vec![with_secret(
            container("a/web/1", "web:1"),
            "",
            1,
        )]))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "workload `a/web/1` uses a secret without a name"
        );
    }

    #[test]
    fn a_secret_the_plan_lacks_is_no_plan_error() {
        // The workload fails on its own when it is created.
        let p = Plan::try_from(plan(vec![with_secret(
            container("a/web/1", "web:1"),
            "db",
            1,
        )]))
        .unwrap();
        assert!(p.secret_values().is_empty());
        assert_eq!(p.secret_refs().len(), 1);
    }

    #[test]
    fn an_empty_plan_is_valid() {
        let p = Plan::try_from(plan(vec![])).unwrap();
        assert!(p.workloads().is_empty());
    }

    #[test]
    fn a_workload_without_an_id_is_refused() {
        let err = Plan::try_from(plan(vec![
            container("a/web/1", "web:1"),
            container("", "web:1"),
        ]))
        .unwrap_err();
        assert_eq!(err, InvalidPlan::MissingId { position: 2 });
        assert_eq!(err.to_string(), "workload #2 of the plan has no id");
    }

    #[test]
    fn repeated_workload_ids_are_refused() {
        let err = Plan::try_from(plan(vec![
            container("a/web/1", "web:1"),
            unit("a/job/1"),
            container("a/web/1", "web:2"),
        ]))
        .unwrap_err();
        assert_eq!(
            err,
            InvalidPlan::DuplicateId {
                id: "a/web/1".into(),
                first: 1,
                again: 3
            }
        );
        assert_eq!(
            err.to_string(),
            "workload `a/web/1` appears more than once in the plan (#1 and #3)"
        );
    }

    #[test]
    fn a_workload_without_a_runtime_spec_is_refused() {
        let mut w = container("a/web/1", "web:1");
        w.runtime = None;
        let err = Plan::try_from(plan(vec![w])).unwrap_err();
        assert_eq!(
            err,
            InvalidPlan::MissingRuntime {
                id: "a/web/1".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "workload `a/web/1` has no runtime spec: it needs a container or a unit"
        );
    }

    #[test]
    fn a_container_without_an_image_is_refused() {
        for image in ["", "  "] {
            let err = Plan::try_from(plan(vec![container("a/web/1", image)])).unwrap_err();
            assert_eq!(
                err,
                InvalidPlan::MissingImage {
                    id: "a/web/1".into()
                }
            );
            assert_eq!(
                err.to_string(),
                "workload `a/web/1` runs a container without an image"
            );
        }
    }
}

//! What changed between two specs of a service, named as in the spec file,
//! for the messages of `apply` and rollouts.

use super::{DeploySpec, ServiceSpec, SwarmFields, UnitFields};

/// The fields that differ between two specs of a service, named as in the
/// spec file: `image`, `environment`, `deploy.replicas`, ...
pub fn changed_fields(old: &ServiceSpec, new: &ServiceSpec) -> Vec<String> {
    // Destructured so that a new field cannot be forgotten here.
    let ServiceSpec {
        image,
        command,
        entrypoint,
        environment,
        ports,
        labels,
        volumes,
        mounts,
        named_volumes,
        networks,
        hostname,
        extra_hosts,
        dns,
        expose,
        working_dir,
        user,
        restart,
        stop_signal,
        stop_grace_period_ms,
        healthcheck,
        probes,
        deploy:
            DeploySpec {
                mode,
                replicas,
                constraints,
                spread,
                max_replicas_per_node,
                labels: deploy_labels,
                update,
                rollback,
            },
        profiles,
        env_files: _,
        resources,
        extras,
        host_access,
        depends_on,
        configs,
        secrets,
        unit,
        swarm,
        reschedule_after_ms,
        pre_deploy,
        ingress,
    } = old;
    let mut fields = unit_changes(unit.as_ref(), new.unit.as_ref());
    // A Swarm service's rollout is its `deploy.update_config`, named below.
    let both_swarm = swarm.is_some() && new.swarm.is_some();
    fields.extend(named_changes([
        ("image", *image != new.image),
        ("command", *command != new.command),
        ("entrypoint", *entrypoint != new.entrypoint),
        ("environment", *environment != new.environment),
        ("ports", *ports != new.ports),
        ("labels", *labels != new.labels),
        ("volumes", *volumes != new.volumes || *mounts != new.mounts),
        ("top-level volumes", *named_volumes != new.named_volumes),
        ("networks", *networks != new.networks),
        ("hostname", *hostname != new.hostname),
        ("extra_hosts", *extra_hosts != new.extra_hosts),
        ("dns", *dns != new.dns),
        ("expose", *expose != new.expose),
        ("working_dir", *working_dir != new.working_dir),
        ("user", *user != new.user),
        ("restart", *restart != new.restart),
        ("stop_signal", *stop_signal != new.stop_signal),
        (
            "stop_grace_period",
            *stop_grace_period_ms != new.stop_grace_period_ms,
        ),
        ("healthcheck", *healthcheck != new.healthcheck),
        ("x-convoy.probes", *probes != new.probes),
        ("deploy.mode", *mode != new.deploy.mode),
        ("deploy.replicas", *replicas != new.deploy.replicas),
        (
            "deploy.placement.constraints",
            *constraints != new.deploy.constraints,
        ),
        ("deploy.placement.preferences", *spread != new.deploy.spread),
        (
            "deploy.placement.max_replicas_per_node",
            *max_replicas_per_node != new.deploy.max_replicas_per_node,
        ),
        ("deploy.labels", *deploy_labels != new.deploy.labels),
        (
            "update strategy",
            !both_swarm && *update != new.deploy.update,
        ),
        ("deploy.rollback_config", *rollback != new.deploy.rollback),
        ("profiles", *profiles != new.profiles),
        ("resources", *resources != new.resources),
        ("container settings", *extras != new.extras),
        ("host access", *host_access != new.host_access),
        ("depends_on", *depends_on != new.depends_on),
        // Named, never shown: a config may be a big file.
        ("configs", *configs != new.configs),
        // A rotation shows as this: which secret, never its value.
        ("secrets", *secrets != new.secrets),
        (
            "x-convoy.reschedule_after",
            *reschedule_after_ms != new.reschedule_after_ms,
        ),
        ("x-convoy.pre_deploy", *pre_deploy != new.pre_deploy),
        ("x-convoy.ingress", *ingress != new.ingress),
    ]));
    for name in swarm_changes(swarm.as_ref(), new.swarm.as_ref()) {
        // `deploy.rollback_config` may be named by both.
        if !fields.contains(&name) {
            fields.push(name);
        }
    }
    fields
}

/// The Swarm settings that differ, by the keys they are written under;
/// `x-convoy.swarm` alone when the cluster changed or one of the two is
/// not a Swarm service.
fn swarm_changes(old: Option<&SwarmFields>, new: Option<&SwarmFields>) -> Vec<String> {
    let (old, new) = match (old, new) {
        (None, None) => return Vec::new(),
        (Some(old), Some(new)) => (old, new),
        _ => return vec!["x-convoy.swarm".to_owned()],
    };
    let SwarmFields {
        cluster,
        constraints,
        restart,
        update,
        rollback,
    } = old;
    if *cluster != new.cluster {
        return vec!["x-convoy.swarm".to_owned()];
    }
    named_changes([
        (
            "deploy.placement.constraints",
            *constraints != new.constraints,
        ),
        ("deploy.restart_policy", *restart != new.restart),
        ("deploy.update_config", *update != new.update),
        ("deploy.rollback_config", *rollback != new.rollback),
    ])
    .collect()
}

/// The keys of a `units:` entry that differ; `unit` alone when one of the
/// two is not a unit (a service became one, or the other way round).
fn unit_changes(old: Option<&UnitFields>, new: Option<&UnitFields>) -> Vec<String> {
    let (old, new) = match (old, new) {
        (None, None) => return Vec::new(),
        (Some(old), Some(new)) => (old, new),
        _ => return vec!["unit".to_owned()],
    };
    let UnitFields {
        unit_name,
        adopt,
        exec_start,
        user,
        restart,
        environment,
        working_dir,
        description,
        state,
        enabled,
    } = old;
    named_changes([
        ("unit", *unit_name != new.unit_name || *adopt != new.adopt),
        ("exec_start", *exec_start != new.exec_start),
        ("user", *user != new.user),
        ("restart", *restart != new.restart),
        ("environment", *environment != new.environment),
        ("working_dir", *working_dir != new.working_dir),
        ("description", *description != new.description),
        ("state", *state != new.state),
        ("enabled", *enabled != new.enabled),
    ])
    .collect()
}

/// The names whose flag says changed, in the order given.
fn named_changes<const N: usize>(names: [(&'static str, bool); N]) -> impl Iterator<Item = String> {
    names
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(name, _)| name.to_owned())
}

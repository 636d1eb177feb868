//! What a service that turns out to run on Swarm cannot have, what Swarm
//! ignores, and what it keeps as written.

use crate::spec::compose::swarm::{path, SwarmRead, NOT_YET};
use crate::spec::compose::{deploy, update, Note};
use crate::spec::locate::Seg;
use crate::spec::ServiceSpec;

/// What `swarm_refusals` needs beyond the spec: keys the spec no longer
/// shows as written.
pub(super) struct SwarmChecks {
    pub(super) gpus_key: bool,
    pub(super) deploy_gpus: bool,
    pub(super) depends_on: bool,
    pub(super) secret_env: bool,
    pub(super) convoy_update: bool,
    pub(super) host_key: Option<&'static str>,
    pub(super) restart_written: bool,
}

/// What a Swarm service cannot have (errors) and what Swarm ignores
/// (warnings), for when the service turns out to run on Swarm.
pub(super) fn swarm_refusals(swarm: &mut SwarmRead, spec: &ServiceSpec, checks: SwarmChecks) {
    let refuse = |swarm: &mut SwarmRead, keys: &[&str], why: &str| {
        swarm.refused.push(Note {
            path: path(keys),
            message: why.to_owned(),
        });
    };
    if checks.gpus_key {
        refuse(swarm, &["gpus"], &format!("GPUs are {NOT_YET}: Convoy assigns GPUs per container, which Swarm does not let it do; run the service as a plain container (`swarm: false`)"));
    }
    if checks.deploy_gpus {
        refuse(swarm, &["deploy", "resources", "reservations", "devices"], &format!("GPU reservations are {NOT_YET}: Convoy assigns GPUs per container, which Swarm does not let it do; run the service as a plain container (`swarm: false`)"));
    }
    if !spec.probes.is_empty() {
        refuse(swarm, &["x-convoy", "probes"], &format!("`x-convoy.probes` are {NOT_YET}: Swarm watches its tasks with the Docker `healthcheck`; write one instead"));
    }
    if spec.ingress.is_some() {
        refuse(swarm, &["x-convoy", "ingress"], &format!("`x-convoy.ingress` is {NOT_YET}: the agents' proxy routes to containers Convoy runs itself, and Swarm routes to its tasks through its own routing mesh (`ports:`); run the service as a plain container (`swarm: false`)"));
    }
    if checks.convoy_update {
        refuse(swarm, &["x-convoy", "update"], "Swarm's own `deploy.update_config` drives a Swarm service's rollout, and Swarm can run neither `canary` nor `blue-green`: write the settings in `deploy.update_config` (and `rollback_config`) instead");
    }
    if checks.depends_on {
        refuse(swarm, &["depends_on"], &format!("`depends_on` is {NOT_YET} (Swarm starts a service's tasks without waiting for others); remove it"));
    }
    if let Some(key) = checks.host_key {
        refuse(swarm, &[key], &format!("host access (`{key}`) is {NOT_YET}: Convoy grants it per node, and Swarm places tasks on nodes of its own choosing"));
    }
    // `secrets:` and `configs:` become Swarm secrets and configs; a secret
    // as an environment variable would sit in the service's spec, which
    // `docker service inspect` shows to anyone with the engine's socket.
    if checks.secret_env {
        refuse(
            swarm,
            &["x-convoy", "secret_env"],
            "`secret_env` is refused for Swarm services: the value would be in the Swarm \
             service's spec, which `docker service inspect` shows; mount the secret as a file \
             (`secrets:`) instead",
        );
    }
    let ignored = |swarm: &mut SwarmRead, key: &str, why: &str| {
        swarm.swarm_notes.push(Note::new(key, why));
    };
    if checks.restart_written {
        ignored(swarm, "restart", "Swarm ignores `restart` and restarts tasks by `deploy.restart_policy` (default: `any`): ignored");
    }
    if !spec.expose.is_empty() {
        ignored(
            swarm,
            "expose",
            "Swarm services reach each other on their networks without it: ignored",
        );
    }
    if spec.resources.shm_size_bytes != 0 {
        ignored(
            swarm,
            "shm_size",
            "not set on Swarm services' tasks: ignored",
        );
    }
    if !spec.resources.ulimits.is_empty() {
        ignored(
            swarm,
            "ulimits",
            "not set on Swarm services' tasks: ignored",
        );
    }
    if !spec.extras.tmpfs.is_empty() {
        ignored(
            swarm,
            "tmpfs",
            "not set on Swarm services' tasks (use a `volumes` entry of `type: tmpfs`): ignored",
        );
    }
    if !spec.extras.pull_policy.is_empty() {
        ignored(
            swarm,
            "pull_policy",
            "Swarm pulls the image itself: ignored",
        );
    }
    if !spec.extras.platform.is_empty() {
        ignored(swarm, "platform", "Swarm picks the image's platform per node (constrain with `node.platform.os` / `node.platform.arch`): ignored");
    }
}

/// What a Swarm service keeps as written, and the Swarm-only settings a
/// plain container warns about or is refused.
pub(super) fn swarm_fields(
    swarm: &mut SwarmRead,
    spec: &ServiceSpec,
    restart_timing: Option<deploy::RestartTiming>,
    raw_constraints: Vec<String>,
    convoy_refused: Vec<(usize, String)>,
    update: Option<&update::UpdateConfig>,
    rollback: Option<&update::UpdateConfig>,
) {
    let constraint_path = |index: usize| {
        let mut at = path(&["deploy", "placement", "constraints"]);
        at.push(Seg::Index(index));
        at
    };
    for (index, why) in convoy_refused {
        swarm.plain_problems.push(Note {
            path: constraint_path(index),
            message: format!("{why} (Swarm services, `x-convoy.swarm`, take Swarm's attributes)"),
        });
    }
    for (index, raw) in raw_constraints.iter().enumerate() {
        // Convoy's numeric comparisons (`node.gpu.count >= 2`) are not Swarm's.
        if let Err(why) = crate::spec::swarm::swarm_constraint(raw) {
            swarm.refused.push(Note {
                path: constraint_path(index),
                message: why,
            });
        }
    }
    swarm.fields.constraints = raw_constraints;
    if let Some(timing) = restart_timing {
        let (delay, window) = (timing.delay_ms.is_some(), timing.window_ms.is_some());
        for (written, key) in [(delay, "delay"), (window, "window")] {
            if written {
                swarm.plain_notes.push(Note {
                    path: path(&["deploy", "restart_policy", key]),
                    message: "only Swarm services (`x-convoy.swarm`) use it; Convoy's agent restarts containers with its own backoff: ignored"
                        .to_owned(),
                });
            }
        }
        swarm.fields.restart = Some(crate::spec::SwarmRestart {
            condition: match spec.restart.condition {
                crate::spec::RestartCondition::None => "none",
                crate::spec::RestartCondition::OnFailure => "on-failure",
                crate::spec::RestartCondition::Any => "any",
            }
            .to_owned(),
            delay_ms: timing.delay_ms.unwrap_or(0),
            max_attempts: spec.restart.max_attempts.into(),
            window_ms: timing.window_ms.unwrap_or(0),
        });
    }
    swarm.fields.update = update.map(|u| u.to_swarm());
    swarm.fields.rollback = rollback.map(|u| u.to_swarm());
}

//! Convoy's volumes on the nodes, listed and removed through agent
//! commands (`ListVolumes`, `RemoveVolumes`), answered in each Ack.

use std::time::Instant;

use super::*;

/// How long each agent has to answer.
const VOLUMES_TIMEOUT: Duration = Duration::from_secs(10);

impl Coordinator {
    /// Convoy's volumes of environment `env` on each connected node.
    pub async fn list_volumes(&self, env: &str) -> VolumesView {
        let kind = pb::command::Kind::ListVolumes(pb::ListVolumes {
            env: env.to_string(),
        });
        self.volumes_command(kind).await
    }

    /// Removes the named volumes of `env` with key `key` on each connected
    /// node; one still in use stays, with the engine's reason.
    pub async fn remove_volumes(&self, env: &str, key: &str) -> VolumesView {
        let kind = pb::command::Kind::RemoveVolumes(pb::RemoveVolumes {
            env: env.to_string(),
            keys: vec![key.to_string()],
        });
        self.volumes_command(kind).await
    }

    async fn volumes_command(&self, kind: pb::command::Kind) -> VolumesView {
        let nodes: Vec<String> = {
            let live = self.live();
            live.nodes
                .iter()
                .filter(|(_, n)| n.ready())
                .map(|(name, _)| name.clone())
                .collect()
        };
        let mut out = VolumesView::default();
        for node in nodes {
            match self.command(&node, kind.clone(), VOLUMES_TIMEOUT).await {
                Ok(CommandAck {
                    result: Ok(()),
                    volumes,
                    ..
                }) => out.volumes.extend(volumes.into_iter().map(|v| NodeVolume {
                    node: node.clone(),
                    name: v.name,
                    env: v.env,
                    key: v.key,
                    anonymous: v.anonymous,
                    used_by: v.used_by,
                    error: v.error,
                })),
                Ok(CommandAck {
                    result: Err(error), ..
                }) => out.unreachable.push(format!("node `{node}`: {error}")),
                Err(error) => out.unreachable.push(error),
            }
        }
        out
    }
}

impl Coordinator {
    /// The keys of the named volumes that `service` of `env` mounts and no
    /// other live service of the environment does; external ones never.
    pub async fn volumes_only_of(&self, env: &str, service: &str) -> Vec<String> {
        let desired = self.desired.lock().await;
        let key = (env.to_string(), service.to_string());
        let Some(rec) = desired.services.get(&key).filter(|r| !r.deleted) else {
            return Vec::new();
        };
        rec.spec
            .named_volumes
            .iter()
            .filter(|decl| !decl.external)
            .filter(|decl| {
                !desired.services.iter().any(|((other_env, name), other)| {
                    other_env == env
                        && name != service
                        && !other.deleted
                        && other
                            .spec
                            .named_volumes
                            .iter()
                            .any(|o| o.key == decl.key && o.name == decl.name)
                })
            })
            .map(|decl| decl.key.clone())
            .collect()
    }

    /// Removes the volumes of `keys` in `env` once no container uses them
    /// (the agents are removing a deleted service's containers), trying
    /// again until none stays or `wait` is over; what was removed and,
    /// from the last try, what stays and why.
    pub async fn remove_volumes_when_free(
        &self,
        env: &str,
        keys: &[String],
        wait: Duration,
    ) -> VolumesView {
        let deadline = Instant::now() + wait;
        let mut removed = Vec::new();
        loop {
            let mut last = VolumesView::default();
            for key in keys {
                let answer = self.remove_volumes(env, key).await;
                last.unreachable.extend(answer.unreachable);
                for volume in answer.volumes {
                    if volume.error.is_empty() {
                        removed.push(volume);
                    } else {
                        last.volumes.push(volume);
                    }
                }
            }
            let done = last.volumes.is_empty() && last.unreachable.is_empty();
            if done || Instant::now() >= deadline {
                last.volumes.extend(removed);
                return last;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

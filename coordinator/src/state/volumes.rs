//! Convoy's volumes on the nodes, listed and removed through agent
//! commands (`ListVolumes`, `RemoveVolumes`), answered in each Ack.

use super::*;

/// How long each agent has to answer.
const VOLUMES_TIMEOUT: Duration = Duration::from_secs(10);

impl Coordinator {
    /// Convoy's volumes of environment `env` on each connected node.
    pub async fn list_volumes(&self, env: &str) -> pb::ListVolumesResponse {
        let kind = pb::command::Kind::ListVolumes(pb::ListVolumes {
            env: env.to_string(),
        });
        self.volumes_command(kind).await
    }

    /// Removes the named volumes of `env` with key `key` on each connected
    /// node; one still in use stays, with the engine's reason.
    pub async fn remove_volumes(&self, env: &str, key: &str) -> pb::ListVolumesResponse {
        let kind = pb::command::Kind::RemoveVolumes(pb::RemoveVolumes {
            env: env.to_string(),
            keys: vec![key.to_string()],
        });
        self.volumes_command(kind).await
    }

    async fn volumes_command(&self, kind: pb::command::Kind) -> pb::ListVolumesResponse {
        let nodes: Vec<String> = {
            let live = self.live();
            live.nodes
                .iter()
                .filter(|(_, n)| n.ready())
                .map(|(name, _)| name.clone())
                .collect()
        };
        let mut out = pb::ListVolumesResponse::default();
        for node in nodes {
            match self.command(&node, kind.clone(), VOLUMES_TIMEOUT).await {
                Ok(CommandAck {
                    result: Ok(()),
                    volumes,
                    ..
                }) => out
                    .volumes
                    .extend(volumes.into_iter().map(|v| pb::NodeVolume {
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

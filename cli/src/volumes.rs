//! `convoy volumes [--env E]`: Convoy's volumes of an environment on each
//! node; `convoy volumes rm KEY [--env E]`: removes that key's named
//! volumes (refused on a node where a container still uses one, with the
//! engine's reason).

use anyhow::Result;
use serde::Serialize;

use crate::args::VolumesCommand;
use crate::commands::{connect, service_env, Output};
use crate::config::Flags;
use crate::output::{self, Format};

/// One volume on one node, as `-o json` prints it.
#[derive(Debug, Serialize, PartialEq)]
pub struct VolumeJson {
    pub node: String,
    pub name: String,
    pub env: String,
    pub key: String,
    pub anonymous: bool,
    pub used_by: Vec<String>,
    /// `rm`: why it stays; absent when removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct VolumesJson {
    pub volumes: Vec<VolumeJson>,
    pub unreachable: Vec<String>,
}

impl From<convoy_proto::ListVolumesResponse> for VolumesJson {
    fn from(response: convoy_proto::ListVolumesResponse) -> Self {
        let convoy_proto::ListVolumesResponse {
            volumes,
            unreachable,
        } = response;
        VolumesJson {
            volumes: volumes
                .into_iter()
                .map(|v| {
                    let convoy_proto::NodeVolume {
                        node,
                        name,
                        env,
                        key,
                        anonymous,
                        used_by,
                        error,
                    } = v;
                    VolumeJson {
                        node,
                        name,
                        env,
                        key,
                        anonymous,
                        used_by,
                        error: (!error.is_empty()).then_some(error),
                    }
                })
                .collect(),
            unreachable,
        }
    }
}

pub(crate) async fn run(
    command: Option<VolumesCommand>,
    format: Format,
    flags: &Flags,
) -> Result<Output> {
    let env = service_env();
    let mut coordinator = connect(flags).await?;
    let removing = matches!(command, Some(VolumesCommand::Rm { .. }));
    let response = match command {
        None => coordinator.list_volumes(env).await?,
        Some(VolumesCommand::Rm { key }) => coordinator.remove_volumes(env, key).await?,
    };
    let view = VolumesJson::from(response);
    let mut out = Output::stdout(match format {
        Format::Table => table(&view, removing),
        Format::Json => output::json(&view),
    });
    if removing && view.volumes.iter().any(|v| v.error.is_some()) {
        out.exit = 1;
    }
    Ok(out)
}

fn table(view: &VolumesJson, removing: bool) -> String {
    let mut out = String::new();
    if removing && view.volumes.is_empty() {
        out.push_str("no volume of that key on the connected nodes\n");
    }
    if !view.volumes.is_empty() {
        let last = if removing { "RESULT" } else { "IN USE BY" };
        out.push_str(&format!(
            "{:<16} {:<40} {:<12} {:<24} {last}\n",
            "NODE", "NAME", "ENV", "KEY"
        ));
        for v in &view.volumes {
            let last = if removing {
                v.error.clone().unwrap_or_else(|| "removed".to_string())
            } else if v.used_by.is_empty() {
                "-".to_string()
            } else {
                v.used_by.join(",")
            };
            out.push_str(&format!(
                "{:<16} {:<40} {:<12} {:<24} {last}\n",
                v.node, v.name, v.env, v.key
            ));
        }
    }
    for node in &view.unreachable {
        out.push_str(&format!("not answered: {node}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_print_as_a_table_and_as_json() {
        let view = VolumesJson::from(convoy_proto::ListVolumesResponse {
            volumes: vec![convoy_proto::NodeVolume {
                node: "n1".into(),
                name: "convoy-prod-data".into(),
                env: "prod".into(),
                key: "data".into(),
                used_by: vec!["convoy-prod-db-1-r2".into()],
                ..Default::default()
            }],
            unreachable: vec!["node `n2` is not connected".into()],
        });
        let text = table(&view, false);
        assert!(text.contains("convoy-prod-data") && text.contains("convoy-prod-db-1-r2"));
        assert!(text.contains("not answered: node `n2`"));
        let json = output::json(&view);
        assert!(
            json.contains("\"key\": \"data\"") && !json.contains("error"),
            "{json}"
        );
    }
}

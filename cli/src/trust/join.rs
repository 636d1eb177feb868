//! `convoy token create --join`: a one-time token for a new node, and the
//! `convoy-agent join` line to run there, which holds no secret.

use std::collections::BTreeMap;

use anyhow::Result;
use convoy_api::agent_paths::{DATA_DIR, JOIN_TOKEN_FILE, PKI_DIR};
use convoy_proto as pb;
use serde::Serialize;

use crate::commands::Output;
use crate::config::Flags;
use crate::output::{self, Format};

/// The agent port `convoyd` listens on unless told otherwise.
pub const DEFAULT_AGENT_PORT: u16 = 7401;

#[derive(Debug, Serialize)]
struct JoinJson {
    id: String,
    token: String,
    ca_fingerprint: String,
    expires_unix_ms: i64,
    uses: u32,
    labels: BTreeMap<String, String>,
    join_command: String,
    /// The one-line install of a host with the convoy-agent package (or
    /// the binary in /usr/local/bin): enrol, then run as the systemd unit.
    install_command: String,
}

/// Makes a join token and says how to use it on the new node.
pub(super) async fn create(
    ttl: Option<u64>,
    labels: Option<BTreeMap<String, String>>,
    uses: Option<u32>,
    node: Option<String>,
    format: Format,
    flags: &Flags,
    now_ms: i64,
) -> Result<Output> {
    let mut coordinator = crate::commands::connect(flags).await?;
    let resp = coordinator
        .create_join_token(pb::CreateJoinTokenRequest {
            ttl_seconds: ttl.unwrap_or(0),
            labels: labels.unwrap_or_default().into_iter().collect(),
            uses: uses.unwrap_or(0),
            node: node.clone().unwrap_or_default(),
        })
        .await?;
    let info = resp.info.clone().unwrap_or_default();
    let node_flag = node
        .as_ref()
        .map(|n| format!(" --node-name {n}"))
        .unwrap_or_default();
    let agents = agent_addresses(coordinator.addresses());
    let join_command = join_line(&agents, &resp.ca_fingerprint, &node_flag);
    let install_command = install_line(&agents, &resp.ca_fingerprint, node.as_deref());
    let json = JoinJson {
        id: info.id.clone(),
        token: resp.token.clone(),
        ca_fingerprint: resp.ca_fingerprint.clone(),
        expires_unix_ms: info.expires_unix_ms,
        uses: info.uses_left,
        labels: info.labels.clone().into_iter().collect(),
        join_command,
        install_command,
    };
    Ok(Output::stdout(match format {
        Format::Json => output::json(&json),
        Format::Table => format!(
            "join token {} (expires in {}, {}):\n{}\nCA fingerprint: {}\n\n\
             On the new node, as root, put the token in a file only root can read\n\
             (paste it, then Ctrl-D):\n  \
             install -d -m 700 {} && (umask 077; cat > {})\n\
             then run the agent as the systemd unit convoy-agent.service (the\n\
             convoy-agent package, docs/PACKAGES.md):\n  {}\n\
             or in the foreground:\n  {}\n",
            json.id,
            output::format_age(json.expires_unix_ms - now_ms),
            if json.uses == 1 {
                "1 use".to_owned()
            } else {
                format!("{} uses", json.uses)
            },
            json.token,
            json.ca_fingerprint,
            std::path::Path::new(JOIN_TOKEN_FILE)
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            JOIN_TOKEN_FILE,
            json.install_command,
            json.join_command
        ),
    }))
}

/// The host of `https://HOST:PORT`, where agents reach the coordinator too.
fn agent_host(address: &str) -> String {
    let rest = address.strip_prefix("https://").unwrap_or(address);
    match rest.rsplit_once(':') {
        Some((host, _)) => host.to_owned(),
        None => rest.to_owned(),
    }
}

/// Where agents reach the coordinators the CLI was given: each one's host
/// on the agent port, comma-separated (several coordinators on one store:
/// the agent takes them in turn).
fn agent_addresses(api_addresses: &[String]) -> String {
    let mut out: Vec<String> = Vec::new();
    for a in api_addresses {
        let addr = format!("{}:{DEFAULT_AGENT_PORT}", agent_host(a));
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    out.join(",")
}

/// The `convoy-agent join` line printed with a join token: it runs as
/// printed on a node where the token is in [`JOIN_TOKEN_FILE`], and holds no
/// secret (issue 13: it used to pass the token with `--token` and lacked
/// the directories `join` needs).
fn join_line(coordinator: &str, ca_fingerprint: &str, node_flag: &str) -> String {
    format!(
        "convoy-agent join --coordinator {coordinator} --token-file {JOIN_TOKEN_FILE} \
         --ca-fingerprint {ca_fingerprint} --pki-dir {PKI_DIR} --data-dir {DATA_DIR}{node_flag}"
    )
}

/// The `convoy-agent install` line printed with a join token: the one-line
/// install of a host where the convoy-agent package is installed (issue
/// 19). Like the join line, it reads the token from [`JOIN_TOKEN_FILE`].
fn install_line(coordinator: &str, ca_fingerprint: &str, node: Option<&str>) -> String {
    let name = node.map(|n| format!(" --name {n}")).unwrap_or_default();
    format!(
        "convoy-agent install --coordinator {coordinator} --token-file {JOIN_TOKEN_FILE} \
         --ca-fingerprint {ca_fingerprint}{name}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_coordinators_give_the_agent_each_of_them() {
        let given = [
            "https://10.0.0.5:7400".to_string(),
            "https://10.0.0.6:7400".to_string(),
            "https://10.0.0.6:7410".to_string(),
        ];
        assert_eq!(
            agent_addresses(&given),
            format!("10.0.0.5:{DEFAULT_AGENT_PORT},10.0.0.6:{DEFAULT_AGENT_PORT}")
        );
        assert_eq!(
            agent_addresses(&given[..1]),
            format!("10.0.0.5:{DEFAULT_AGENT_PORT}")
        );
    }

    #[test]
    fn the_agent_host_comes_from_the_api_address() {
        assert_eq!(agent_host("https://10.0.0.5:7400"), "10.0.0.5");
        assert_eq!(agent_host("https://[::1]:7400"), "[::1]");
    }

    /// Issue 13: the printed line could not run as printed and held the token.
    #[test]
    fn the_join_line_names_the_token_file_and_both_directories_but_no_secret() {
        let line = join_line("10.0.0.5:7401", "sha256:ab", " --node-name n1");
        assert_eq!(
            line,
            format!(
                "convoy-agent join --coordinator 10.0.0.5:7401 --token-file {JOIN_TOKEN_FILE} \
                 --ca-fingerprint sha256:ab --pki-dir {PKI_DIR} --data-dir {DATA_DIR} --node-name n1"
            )
        );
        assert!(!line.contains("--token "), "{line}");
        assert!(!line.contains("convoyjoin_"), "{line}");
    }

    /// Issue 19: the package's one-line install reads the same token file.
    #[test]
    fn the_install_line_names_the_token_file_and_the_node_but_no_secret() {
        assert_eq!(
            install_line("10.0.0.5:7401", "sha256:ab", Some("n1")),
            format!(
                "convoy-agent install --coordinator 10.0.0.5:7401 --token-file {JOIN_TOKEN_FILE} \
                 --ca-fingerprint sha256:ab --name n1"
            )
        );
        assert!(!install_line("h:1", "sha256:ab", None).contains("--name"));
    }
}

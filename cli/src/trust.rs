//! `convoy token ...`, `convoy audit` and `convoy context ...`: who may talk
//! to the coordinator, what they did, and which coordinator this CLI talks
//! to. Token secrets are printed once, at creation, and never written to
//! disk by the CLI.

use convoy_api::agent_paths::{DATA_DIR, JOIN_TOKEN_FILE, PKI_DIR};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use convoy_proto as pb;
use serde::Serialize;

pub use crate::args::{parse_duration_secs, parse_labels, ContextCommand, TokenCommand};
use crate::commands::Output;
use crate::config::{self, ConfigFile, Flags};
use crate::output::{self, Format};

/// The agent port `convoyd` listens on unless told otherwise.
pub const DEFAULT_AGENT_PORT: u16 = 7401;

#[derive(Debug, Serialize, PartialEq)]
pub struct TokenJson {
    pub id: String,
    pub name: String,
    pub role: String,
    pub envs: Vec<String>,
    pub created_unix_ms: i64,
    pub expires_unix_ms: i64,
    pub revoked: bool,
    pub created_by: String,
    pub uses_left: u32,
    pub labels: BTreeMap<String, String>,
    pub node: String,
}

impl From<&pb::TokenInfo> for TokenJson {
    fn from(t: &pb::TokenInfo) -> Self {
        let pb::TokenInfo {
            id,
            name,
            role,
            envs,
            created_unix_ms,
            expires_unix_ms,
            revoked,
            created_by,
            uses_left,
            labels,
            node,
        } = t;
        Self {
            id: id.clone(),
            name: name.clone(),
            role: role.clone(),
            envs: envs.clone(),
            created_unix_ms: *created_unix_ms,
            expires_unix_ms: *expires_unix_ms,
            revoked: *revoked,
            created_by: created_by.clone(),
            uses_left: *uses_left,
            labels: labels.clone().into_iter().collect(),
            node: node.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
struct TokenListJson {
    tokens: Vec<TokenJson>,
}

#[derive(Debug, Serialize)]
struct CreatedJson {
    id: String,
    name: String,
    role: String,
    envs: Vec<String>,
    expires_unix_ms: i64,
    token: String,
}

#[derive(Debug, Serialize)]
struct JoinJson {
    id: String,
    token: String,
    ca_fingerprint: String,
    expires_unix_ms: i64,
    uses: u32,
    labels: BTreeMap<String, String>,
    join_command: String,
}

#[derive(Debug, Serialize)]
struct AuditJson {
    entries: Vec<AuditEntryJson>,
}

#[derive(Debug, Serialize)]
struct AuditEntryJson {
    unix_ms: i64,
    who: String,
    action: String,
    target: String,
    result: String,
}

pub async fn token(
    command: TokenCommand,
    format: Format,
    flags: &Flags,
    now_ms: i64,
) -> Result<Output> {
    match command {
        TokenCommand::Create {
            join: true,
            ttl,
            labels,
            uses,
            node,
            ..
        } => {
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
            let host = agent_host(coordinator.address());
            let node_flag = node
                .map(|n| format!(" --node-name {n}"))
                .unwrap_or_default();
            let join_command = join_line(
                &format!("{host}:{DEFAULT_AGENT_PORT}"),
                &resp.ca_fingerprint,
                &node_flag,
            );
            let json = JoinJson {
                id: info.id.clone(),
                token: resp.token.clone(),
                ca_fingerprint: resp.ca_fingerprint.clone(),
                expires_unix_ms: info.expires_unix_ms,
                uses: info.uses_left,
                labels: info.labels.clone().into_iter().collect(),
                join_command,
            };
            Ok(Output::stdout(match format {
                Format::Json => output::json(&json),
                Format::Table => format!(
                    "join token {} (expires in {}, {}):\n{}\nCA fingerprint: {}\n\n\
                     On the new node, as root, put the token in a file only root can read\n\
                     (paste it, then Ctrl-D):\n  \
                     install -d -m 700 {} && (umask 077; cat > {})\n\
                     then run:\n  {}\n",
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
                    json.join_command
                ),
            }))
        }
        TokenCommand::Create {
            name,
            role,
            mut envs,
            ttl,
            ..
        } => {
            let role =
                role.ok_or_else(|| anyhow!("--role is required (admin, deployer or viewer)"))?;
            envs = token_envs(
                &role,
                envs,
                &crate::commands::selected_env(),
                crate::commands::selected_env_from_variable(),
            );
            let mut coordinator = crate::commands::connect(flags).await?;
            let resp = coordinator
                .create_token(pb::CreateTokenRequest {
                    name: name.unwrap_or_default(),
                    role,
                    envs,
                    ttl_seconds: ttl.unwrap_or(0),
                })
                .await?;
            let info = resp.info.unwrap_or_default();
            let json = CreatedJson {
                id: info.id,
                name: info.name,
                role: info.role,
                envs: info.envs,
                expires_unix_ms: info.expires_unix_ms,
                token: resp.token,
            };
            Ok(match format {
                Format::Json => Output::stdout(output::json(&json)),
                Format::Table => Output {
                    stdout: format!("{}\n", json.token),
                    stderr: format!(
                        "created token {} ({}, {}{}{}); the secret below is shown only once\n",
                        json.id,
                        json.name,
                        json.role,
                        if json.envs.is_empty() {
                            String::new()
                        } else {
                            format!(" for {}", json.envs.join(", "))
                        },
                        if json.expires_unix_ms == 0 {
                            String::new()
                        } else {
                            format!(
                                ", expires in {}",
                                output::format_age(json.expires_unix_ms - now_ms)
                            )
                        }
                    ),
                    exit: 0,
                },
            })
        }
        TokenCommand::List => {
            let mut coordinator = crate::commands::connect(flags).await?;
            let resp = coordinator.list_tokens().await?;
            let tokens: Vec<TokenJson> = resp.tokens.iter().map(TokenJson::from).collect();
            Ok(Output::stdout(match format {
                Format::Json => output::json(&TokenListJson { tokens }),
                Format::Table => tokens_table(&tokens, now_ms),
            }))
        }
        TokenCommand::Revoke { id } => {
            let mut coordinator = crate::commands::connect(flags).await?;
            let resp = coordinator.revoke_token(id.clone()).await?;
            let info = TokenJson::from(&resp.info.unwrap_or_default());
            Ok(Output::stdout(match format {
                Format::Json => output::json(&info),
                Format::Table => format!("revoked token {} ({})\n", info.id, info.name),
            }))
        }
    }
}

/// The host of `https://HOST:PORT`, where agents reach the coordinator too.
fn agent_host(address: &str) -> String {
    let rest = address.strip_prefix("https://").unwrap_or(address);
    match rest.rsplit_once(':') {
        Some((host, _)) => host.to_owned(),
        None => rest.to_owned(),
    }
}

fn tokens_table(tokens: &[TokenJson], now_ms: i64) -> String {
    if tokens.is_empty() {
        return "no tokens\n".to_owned();
    }
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            let state = if t.revoked {
                "revoked".to_owned()
            } else if t.expires_unix_ms != 0 && t.expires_unix_ms <= now_ms {
                "expired".to_owned()
            } else if t.role == "join" && t.uses_left == 0 {
                "used up".to_owned()
            } else {
                "active".to_owned()
            };
            vec![
                t.id.clone(),
                t.name.clone(),
                t.role.clone(),
                if t.envs.is_empty() {
                    "*".to_owned()
                } else {
                    t.envs.join(",")
                },
                state,
                format!("{} ago", output::format_age(now_ms - t.created_unix_ms)),
                if t.expires_unix_ms == 0 {
                    "never".to_owned()
                } else if t.expires_unix_ms > now_ms {
                    format!("in {}", output::format_age(t.expires_unix_ms - now_ms))
                } else {
                    format!("{} ago", output::format_age(now_ms - t.expires_unix_ms))
                },
                or_dash(&t.created_by),
            ]
        })
        .collect();
    output::table(
        &[
            "ID",
            "NAME",
            "ROLE",
            "ENVS",
            "STATE",
            "CREATED",
            "EXPIRES",
            "CREATED BY",
        ],
        &rows,
    )
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

pub async fn audit(
    since_secs: Option<u64>,
    format: Format,
    flags: &Flags,
    now_ms: i64,
) -> Result<Output> {
    let since = since_secs.map_or(0, |s| {
        now_ms.saturating_sub(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX))
    });
    let mut coordinator = crate::commands::connect(flags).await?;
    let resp = coordinator.list_audit(since).await?;
    let entries: Vec<AuditEntryJson> = resp
        .entries
        .into_iter()
        .map(|e| {
            let pb::AuditEntry {
                unix_ms,
                who,
                action,
                target,
                result,
            } = e;
            AuditEntryJson {
                unix_ms,
                who,
                action,
                target,
                result,
            }
        })
        .collect();
    Ok(Output::stdout(match format {
        Format::Json => output::json(&AuditJson { entries }),
        Format::Table if entries.is_empty() => "no audit entries\n".to_owned(),
        Format::Table => output::table(
            &["WHEN", "WHO", "ACTION", "TARGET", "RESULT"],
            &entries
                .iter()
                .map(|e| {
                    vec![
                        format!("{} ago", output::format_age(now_ms - e.unix_ms)),
                        e.who.clone(),
                        e.action.clone(),
                        or_dash(&e.target),
                        e.result.clone(),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }))
}

#[derive(Debug, Serialize)]
struct ContextsJson {
    current_context: Option<String>,
    contexts: Vec<ContextJson>,
}

#[derive(Debug, Serialize)]
struct ContextJson {
    name: String,
    current: bool,
    address: String,
    ca: Option<PathBuf>,
    token_file: Option<PathBuf>,
}

/// `convoy context use|set -o json`: what changed.
#[derive(Debug, Serialize)]
struct ContextChangedJson {
    /// "added", "updated" or "switched".
    action: &'static str,
    config_file: PathBuf,
    context: ContextJson,
}

impl ContextChangedJson {
    fn new(action: &'static str, path: &Path, file: &ConfigFile, name: &str) -> Option<Self> {
        let c = file.contexts.get(name)?;
        Some(Self {
            action,
            config_file: path.to_path_buf(),
            context: ContextJson {
                name: name.to_owned(),
                current: file.current_context.as_deref() == Some(name),
                address: c.address.clone(),
                ca: c.ca.clone(),
                token_file: c.token_file.clone(),
            },
        })
    }
}

pub fn context(command: ContextCommand, format: Format, flags: &Flags) -> Result<Output> {
    let path = config::default_path()
        .ok_or_else(|| anyhow!("no config file: set CONVOY_CONFIG, XDG_CONFIG_HOME or HOME"))?;
    context_in(&path, command, format, flags)
}

fn context_in(
    path: &Path,
    command: ContextCommand,
    format: Format,
    flags: &Flags,
) -> Result<Output> {
    let mut file = ConfigFile::load(path)?;
    match command {
        ContextCommand::List => {
            let contexts: Vec<ContextJson> = file
                .contexts
                .iter()
                .map(|(name, c)| ContextJson {
                    name: name.clone(),
                    current: file.current_context.as_deref() == Some(name.as_str()),
                    address: c.address.clone(),
                    ca: c.ca.clone(),
                    token_file: c.token_file.clone(),
                })
                .collect();
            Ok(Output::stdout(match format {
                Format::Json => output::json(&ContextsJson {
                    current_context: file.current_context.clone(),
                    contexts,
                }),
                Format::Table if contexts.is_empty() => format!(
                    "no contexts in {}: add one with `convoy context set NAME --addr URL`\n",
                    path.display()
                ),
                Format::Table => output::table(
                    &["CURRENT", "NAME", "ADDRESS", "CA", "TOKEN FILE"],
                    &contexts
                        .iter()
                        .map(|c| {
                            vec![
                                if c.current { "*" } else { "" }.to_owned(),
                                c.name.clone(),
                                c.address.clone(),
                                c.ca.as_ref()
                                    .map_or("-".to_owned(), |p| p.display().to_string()),
                                c.token_file
                                    .as_ref()
                                    .map_or("-".to_owned(), |p| p.display().to_string()),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }))
        }
        ContextCommand::Use { name } => {
            if !file.contexts.contains_key(&name) {
                let known: Vec<_> = file.contexts.keys().cloned().collect();
                bail!(
                    "no context `{name}` in {} (known: {})",
                    path.display(),
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                );
            }
            file.current_context = Some(name.clone());
            file.save(path)?;
            Ok(Output::stdout(match format {
                Format::Json => {
                    output::json(&ContextChangedJson::new("switched", path, &file, &name))
                }
                Format::Table => format!("switched to context {name}\n"),
            }))
        }
        ContextCommand::Set { name } => {
            let old = file.contexts.get(&name).cloned();
            let address = match (&flags.addr, &old) {
                (Some(a), _) => a.clone(),
                (None, Some(o)) => o.address.clone(),
                (None, None) => bail!("a new context needs --addr"),
            };
            crate::client::normalize_address(&address)?;
            let ca = match &flags.ca {
                Some(p) => Some(absolute(p)?),
                None => old.as_ref().and_then(|o| o.ca.clone()),
            };
            let token_file = match &flags.token_file {
                Some(p) => Some(absolute(p)?),
                None => old.as_ref().and_then(|o| o.token_file.clone()),
            };
            file.contexts.insert(
                name.clone(),
                config::Context {
                    address,
                    ca,
                    token_file,
                },
            );
            if file.current_context.is_none() {
                file.current_context = Some(name.clone());
            }
            file.save(path)?;
            let action = if old.is_some() { "updated" } else { "added" };
            Ok(Output::stdout(match format {
                Format::Json => output::json(&ContextChangedJson::new(action, path, &file, &name)),
                Format::Table => format!("{action} context {name} in {}\n", path.display()),
            }))
        }
    }
}

/// Paths in the config file are read relative to its directory; the user
/// typed them relative to the working directory, so store them absolute.
fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("cannot read the working directory")?
        .join(p))
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

/// The environments a new token is limited to. `convoy token create --role
/// deployer --env staging`: the global `--env` names the one it may touch.
/// An exported `CONVOY_ENV` applies to deployer tokens only: viewer and admin
/// tokens have no environments, and a default in the shell must not make
/// creating one fail (issue 13); `--env` given on the line still does.
fn token_envs(
    role: &str,
    mut envs: Vec<String>,
    selected: &str,
    from_variable: bool,
) -> Vec<String> {
    let applies = role == "deployer" || !from_variable;
    if envs.is_empty() && !selected.is_empty() && applies {
        envs.push(selected.to_string());
    }
    envs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13: with `CONVOY_ENV` exported, `token create --role viewer`
    /// (or admin) was refused, the variable taken for an environment limit.
    #[test]
    fn token_create_with_convoy_env_exported_limits_deployers_only() {
        let none: Vec<String> = Vec::new();
        assert_eq!(token_envs("viewer", none.clone(), "prod", true), none);
        assert_eq!(token_envs("admin", none.clone(), "prod", true), none);
        assert_eq!(
            token_envs("deployer", none.clone(), "prod", true),
            vec!["prod"]
        );
        // `--env` on the line is a request for every role (the coordinator
        // refuses it for viewers and admins, saying why).
        assert_eq!(
            token_envs("viewer", none.clone(), "prod", false),
            vec!["prod"]
        );
        assert_eq!(
            token_envs("deployer", vec!["a".into()], "prod", true),
            vec!["a"]
        );
    }

    #[test]
    fn the_agent_host_comes_from_the_api_address() {
        assert_eq!(agent_host("https://10.0.0.5:7400"), "10.0.0.5");
        assert_eq!(agent_host("https://[::1]:7400"), "[::1]");
    }

    /// Issue 13: `context use|set` printed text whatever `-o` said.
    #[test]
    fn context_use_and_set_answer_in_json_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        let flags = Flags {
            addr: Some("https://a:7400".into()),
            ..Flags::default()
        };
        let out = context_in(
            &path,
            ContextCommand::Set { name: "a".into() },
            Format::Json,
            &flags,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["action"], "added", "{v}");
        assert_eq!(v["context"]["name"], "a");
        assert_eq!(v["context"]["address"], "https://a:7400");
        assert_eq!(v["context"]["current"], true);
        assert_eq!(v["config_file"], path.to_str().unwrap());
        let out = context_in(
            &path,
            ContextCommand::Set { name: "a".into() },
            Format::Json,
            &flags,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["action"], "updated", "{v}");
        let out = context_in(
            &path,
            ContextCommand::Use { name: "a".into() },
            Format::Json,
            &flags,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["action"], "switched", "{v}");
    }

    #[test]
    fn contexts_set_use_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        let flags = Flags {
            addr: Some("https://a:7400".into()),
            ca: Some("/abs/ca.pem".into()),
            token_file: Some("/abs/t".into()),
            context: None,
        };
        context_in(
            &path,
            ContextCommand::Set { name: "a".into() },
            Format::Table,
            &flags,
        )
        .unwrap();
        let flags_b = Flags {
            addr: Some("b:7400".into()),
            ..Flags::default()
        };
        context_in(
            &path,
            ContextCommand::Set { name: "b".into() },
            Format::Table,
            &flags_b,
        )
        .unwrap();
        let file = ConfigFile::load(&path).unwrap();
        assert_eq!(
            file.current_context.as_deref(),
            Some("a"),
            "set keeps the current one"
        );
        assert_eq!(
            file.contexts["a"].ca.as_deref(),
            Some(Path::new("/abs/ca.pem"))
        );
        context_in(
            &path,
            ContextCommand::Use { name: "b".into() },
            Format::Table,
            &flags_b,
        )
        .unwrap();
        assert_eq!(
            ConfigFile::load(&path).unwrap().current_context.as_deref(),
            Some("b")
        );
        let err = context_in(
            &path,
            ContextCommand::Use { name: "c".into() },
            Format::Table,
            &flags_b,
        )
        .unwrap_err();
        assert!(err.to_string().contains("known: a, b"), "{err}");
        let out = context_in(&path, ContextCommand::List, Format::Json, &Flags::default()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["current_context"], "b");
        assert_eq!(v["contexts"][1]["current"], true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}

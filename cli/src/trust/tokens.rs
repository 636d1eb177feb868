//! `convoy token create|list|revoke`: CLI tokens, their roles and the
//! environments a deployer may touch. The secret is printed once.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use convoy_proto as pb;
use serde::Serialize;

use super::{join, or_dash};
use crate::args::TokenCommand;
use crate::commands::Output;
use crate::config::Flags;
use crate::output::{self, Format};

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
        } => join::create(ttl, labels, uses, node, format, flags, now_ms).await,
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
}

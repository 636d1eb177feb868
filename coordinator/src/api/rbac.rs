//! Who may do what: the role matrix of ControlService calls (viewer,
//! deployer in its environments, admin) and the refusals users see.

use super::auth::Caller;
use crate::tokens::Role;

/// An RPC as far as authorization is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    Status,
    ListNodes,
    Watch,
    Verify,
    History,
    Apply {
        env: &'a str,
    },
    Delete {
        env: &'a str,
    },
    RemoveNode,
    CreateToken,
    ListTokens,
    RevokeToken,
    CreateJoinToken,
    ListAudit,
    RegistryLogin,
    RegistryList,
    RegistryLogout,
    /// Secrets of an environment: writes need deployer rights there; the
    /// list and history (names, versions, never values) any token that
    /// may see the environment. An empty `env` lists every environment the
    /// token may see.
    SecretSet {
        env: &'a str,
    },
    SecretGenerate {
        env: &'a str,
    },
    SecretRotate {
        env: &'a str,
    },
    SecretRemove {
        env: &'a str,
    },
    SecretList {
        env: &'a str,
    },
    SecretHistory {
        env: &'a str,
    },
    /// A dump of the whole store (`convoyd snapshot save`): admin only.
    Snapshot,
    /// Webhook notifiers (`convoy notify ...`): admin only (the coordinator
    /// makes requests to the URL they name).
    Notify,
    /// `convoy node cordon|uncordon|drain` (issue 19): admin only.
    CordonNode,
    UncordonNode,
    DrainNode,
    /// `convoy logs` (issue 19): deployer or admin in the environment.
    Logs {
        env: &'a str,
    },
    /// `convoy exec` and `convoy run`: deployer or admin in the environment.
    Exec {
        env: &'a str,
    },
    Run {
        env: &'a str,
    },
}

impl<'a> Action<'a> {
    /// The CLI command, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Action::Status => "status",
            Action::ListNodes => "nodes",
            Action::Watch => "events",
            Action::Verify => "verify",
            Action::History => "history",
            Action::Apply { .. } => "apply",
            Action::Delete { .. } => "delete",
            Action::RemoveNode => "node remove",
            Action::CreateToken => "token create",
            Action::ListTokens => "token list",
            Action::RevokeToken => "token revoke",
            Action::CreateJoinToken => "token create --join",
            Action::ListAudit => "audit",
            Action::RegistryLogin => "registry login",
            Action::RegistryList => "registry ls",
            Action::RegistryLogout => "registry logout",
            Action::SecretSet { .. } => "secret set",
            Action::SecretGenerate { .. } => "secret generate",
            Action::SecretRotate { .. } => "secret rotate",
            Action::SecretRemove { .. } => "secret rm",
            Action::SecretList { .. } => "secret list",
            Action::SecretHistory { .. } => "secret history",
            Action::Snapshot => "convoyd snapshot save",
            Action::Notify => "notify",
            Action::CordonNode => "node cordon",
            Action::UncordonNode => "node uncordon",
            Action::DrainNode => "node drain",
            Action::Logs { .. } => "logs",
            Action::Exec { .. } => "exec",
            Action::Run { .. } => "run",
        }
    }

    /// The `action` of audit entries.
    pub fn audit_name(self) -> &'static str {
        match self {
            Action::Status => "status",
            Action::ListNodes => "nodes",
            Action::Watch => "events",
            Action::Verify => "verify",
            Action::History => "history",
            Action::Apply { .. } => "apply",
            Action::Delete { .. } => "delete",
            Action::RemoveNode => "node.remove",
            Action::CreateToken => "token.create",
            Action::ListTokens => "token.list",
            Action::RevokeToken => "token.revoke",
            Action::CreateJoinToken => "join-token.create",
            Action::ListAudit => "audit.list",
            Action::RegistryLogin => "registry.login",
            Action::RegistryList => "registry.list",
            Action::RegistryLogout => "registry.logout",
            Action::SecretSet { .. } => "secret.set",
            Action::SecretGenerate { .. } => "secret.generate",
            Action::SecretRotate { .. } => "secret.rotate",
            Action::SecretRemove { .. } => "secret.remove",
            Action::SecretList { .. } => "secret.list",
            Action::SecretHistory { .. } => "secret.history",
            Action::Snapshot => "store.snapshot",
            Action::Notify => "notify",
            Action::CordonNode => "node.cordon",
            Action::UncordonNode => "node.uncordon",
            Action::DrainNode => "node.drain",
            Action::Logs { .. } => "logs",
            Action::Exec { .. } => "exec",
            Action::Run { .. } => "run",
        }
    }

    /// The environment of a deploy action (apply, delete, secret writes).
    fn deploy_env(self) -> Option<&'a str> {
        match self {
            Action::Apply { env }
            | Action::Delete { env }
            | Action::SecretSet { env }
            | Action::SecretGenerate { env }
            | Action::SecretRotate { env }
            | Action::SecretRemove { env }
            | Action::Logs { env }
            | Action::Exec { env }
            | Action::Run { env } => Some(env),
            _ => None,
        }
    }
}

/// Whether `caller` may see environment `env` (any, when it is empty).
pub fn sees_env(caller: &Caller, env: &str) -> bool {
    env.is_empty()
        || caller.role == Role::Admin
        || caller.envs.is_empty()
        || caller.envs.iter().any(|e| e == env)
}

/// The role matrix. viewer: status and nodes. deployer: also apply and
/// delete, in its environments only (all when it has none). admin:
/// everything. Join tokens never get this far (the interceptor refuses them).
/// The error is the user-facing refusal.
pub fn authorize(caller: &Caller, action: Action<'_>) -> Result<(), String> {
    let read = matches!(
        action,
        Action::Status | Action::ListNodes | Action::Watch | Action::Verify | Action::History
    );
    let deploy = action.deploy_env().is_some();
    let token = format!("token `{}` ({})", caller.name, caller.role_desc());
    if let (
        Action::SecretList { env } | Action::SecretHistory { env },
        Role::Viewer | Role::Deployer,
    ) = (action, caller.role)
    {
        return if sees_env(caller, env) {
            Ok(())
        } else {
            Err(format!(
                "{token} may not see the secrets of environment `{env}`"
            ))
        };
    }
    match caller.role {
        Role::Admin => Ok(()),
        Role::Viewer if read => Ok(()),
        Role::Viewer => Err(format!(
            "{token} may only read (status, nodes, events, verify, history); `{}` needs a {} token",
            action.name(),
            if deploy { "deployer or admin" } else { "admin" }
        )),
        Role::Deployer if read => Ok(()),
        Role::Deployer if deploy => {
            let env = action.deploy_env().unwrap_or_default();
            if caller.envs.is_empty() || caller.envs.iter().any(|e| e == env) {
                Ok(())
            } else {
                Err(format!("{token} may not touch environment `{env}`"))
            }
        }
        Role::Deployer => Err(format!(
            "{token} may read, apply and delete services; `{}` needs an admin token",
            action.name()
        )),
        Role::Join => Err(format!(
            "{token} is a join token: it enrols agents and cannot be used with the CLI"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, envs: &[&str]) -> Caller {
        Caller {
            id: "abcd1234".into(),
            name: "t".into(),
            role,
            envs: envs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_role_matrix() {
        use Action::*;
        let staging = Apply { env: "staging" };
        let default = Apply { env: "default" };
        let del_default = Delete { env: "default" };
        let all = [
            Status,
            ListNodes,
            Watch,
            Verify,
            History,
            default,
            staging,
            del_default,
            RemoveNode,
            CreateToken,
            ListTokens,
            RevokeToken,
            CreateJoinToken,
            ListAudit,
            RegistryLogin,
            RegistryList,
            RegistryLogout,
            SecretSet { env: "staging" },
            SecretGenerate { env: "staging" },
            SecretRotate { env: "staging" },
            SecretRemove { env: "staging" },
            SecretList { env: "staging" },
            SecretHistory { env: "staging" },
            SecretSet { env: "prod" },
            SecretRotate { env: "prod" },
            SecretRemove { env: "prod" },
            SecretList { env: "prod" },
            SecretHistory { env: "prod" },
            SecretList { env: "" },
            Snapshot,
            Notify,
            CordonNode,
            UncordonNode,
            DrainNode,
        ];
        let secret_reads = [
            SecretList { env: "staging" },
            SecretHistory { env: "staging" },
            SecretList { env: "prod" },
            SecretHistory { env: "prod" },
            SecretList { env: "" },
        ];
        let secret_writes = [
            SecretSet { env: "staging" },
            SecretGenerate { env: "staging" },
            SecretRotate { env: "staging" },
            SecretRemove { env: "staging" },
            SecretSet { env: "prod" },
            SecretRotate { env: "prod" },
            SecretRemove { env: "prod" },
        ];
        let reads = [Status, ListNodes, Watch, Verify, History];
        let viewer: Vec<Action> = reads.iter().chain(&secret_reads).copied().collect();
        let deployer: Vec<Action> = reads
            .iter()
            .chain(&[default, staging, del_default])
            .chain(&secret_reads)
            .chain(&secret_writes)
            .copied()
            .collect();
        // Scoped to staging: nothing of prod, not even the secrets' names.
        let staging_deployer: Vec<Action> = reads
            .iter()
            .chain(&[staging])
            .chain(&[
                SecretSet { env: "staging" },
                SecretGenerate { env: "staging" },
                SecretRotate { env: "staging" },
                SecretRemove { env: "staging" },
                SecretList { env: "staging" },
                SecretHistory { env: "staging" },
                SecretList { env: "" },
            ])
            .copied()
            .collect();
        // (role, envs, allowed actions)
        let table: &[(Role, &[&str], &[Action])] = &[
            (Role::Admin, &[], &all),
            (Role::Viewer, &[], &viewer),
            (Role::Deployer, &[], &deployer),
            (Role::Deployer, &["staging"], &staging_deployer),
            (Role::Join, &[], &[]),
        ];
        for (role, envs, allowed) in table {
            let c = caller(*role, envs);
            for action in all {
                let got = authorize(&c, action);
                assert_eq!(
                    got.is_ok(),
                    allowed.contains(&action),
                    "{} {action:?}: {got:?}",
                    c.role_desc()
                );
                if let Err(msg) = got {
                    assert!(msg.contains(&c.role_desc()), "{msg}");
                }
            }
        }
    }

    #[test]
    fn refusals_say_what_the_role_may_do() {
        let c = caller(Role::Deployer, &["staging"]);
        assert_eq!(
            authorize(&c, Action::Apply { env: "default" }).unwrap_err(),
            "token `t` (deployer for staging) may not touch environment `default`"
        );
        let v = caller(Role::Viewer, &[]);
        assert_eq!(
            authorize(&v, Action::Apply { env: "default" }).unwrap_err(),
            "token `t` (viewer) may only read (status, nodes, events, verify, history); `apply` needs a deployer or admin token"
        );
        assert_eq!(
            authorize(&caller(Role::Deployer, &[]), Action::CreateToken).unwrap_err(),
            "token `t` (deployer) may read, apply and delete services; `token create` needs an admin token"
        );
        assert_eq!(
            authorize(&c, Action::SecretList { env: "prod" }).unwrap_err(),
            "token `t` (deployer for staging) may not see the secrets of environment `prod`"
        );
        assert_eq!(
            authorize(&c, Action::SecretSet { env: "prod" }).unwrap_err(),
            "token `t` (deployer for staging) may not touch environment `prod`"
        );
        assert_eq!(
            authorize(&v, Action::SecretSet { env: "prod" }).unwrap_err(),
            "token `t` (viewer) may only read (status, nodes, events, verify, history); `secret set` needs a deployer or admin token"
        );
    }
}

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
    Apply { env: &'a str },
    Delete { env: &'a str },
    RemoveNode,
    CreateToken,
    ListTokens,
    RevokeToken,
    CreateJoinToken,
    ListAudit,
    RegistryLogin,
    RegistryList,
    RegistryLogout,
}

impl Action<'_> {
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
        }
    }
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
    let deploy = matches!(action, Action::Apply { .. } | Action::Delete { .. });
    let token = format!("token `{}` ({})", caller.name, caller.role_desc());
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
            let (Action::Apply { env } | Action::Delete { env }) = action else {
                unreachable!("deploy actions carry an environment");
            };
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
        ];
        // (role, envs, allowed actions)
        let table: &[(Role, &[&str], &[Action])] = &[
            (Role::Admin, &[], &all),
            (
                Role::Viewer,
                &[],
                &[Status, ListNodes, Watch, Verify, History],
            ),
            (
                Role::Deployer,
                &[],
                &[
                    Status,
                    ListNodes,
                    Watch,
                    Verify,
                    History,
                    default,
                    staging,
                    del_default,
                ],
            ),
            (
                Role::Deployer,
                &["staging"],
                &[Status, ListNodes, Watch, Verify, History, staging],
            ),
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
    }
}

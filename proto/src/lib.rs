//! Convoy's wire definitions: the agent stream and the CLI's control API,
//! generated from `proto/`. Wire types only; domain types live in the crates
//! that own them.

pub mod codec;

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("convoy.v1");
}

pub use v1::*;

/// The TLS server name every Convoy client verifies on the coordinator's
/// certificate, whatever address it dialed (as Nomad's `server.<region>.nomad`).
pub const COORDINATOR_SERVER_NAME: &str = "coordinator.convoy";

/// The Hello capability of an agent that decodes
/// `CoordinatorMessage.encoded_plan`.
pub const CAPABILITY_ENCODED_PLAN: &str = "encoded-plan";

/// Upper bounds (seconds) of the proxy's latency buckets
/// (`ProxyStats.bucket_bounds`): Prometheus' defaults with three more
/// under 5 ms; +Inf is implied.
pub const PROXY_LATENCY_BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Metadata key carrying the CLI's bearer token.
pub const AUTHORIZATION: &str = "authorization";

/// Registry logins cross the wire with their password; logs never show it.
impl std::fmt::Debug for v1::RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl std::fmt::Debug for v1::SetRegistryAuthRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetRegistryAuthRequest")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A secret's value crosses the wire once, to the coordinator; logs never
/// show it.
impl std::fmt::Debug for v1::SetSecretRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetSecretRequest")
            .field("env", &self.env)
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .field("rotate", &self.rotate)
            .finish()
    }
}

/// A secret's value travels in node plans; logs never show it.
impl std::fmt::Debug for v1::SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretValue")
            .field("env", &self.env)
            .field("name", &self.name)
            .field("version", &self.version)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// An apply carries the values of the spec's `file:` and `environment:`
/// secrets; logs show their names only (and the configs' sizes).
impl std::fmt::Debug for v1::ApplyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names =
            |m: &std::collections::BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
        f.debug_struct("ApplyRequest")
            .field("filename", &self.filename)
            .field("content_bytes", &self.content.len())
            .field("dry_run", &self.dry_run)
            .field("env", &self.env)
            .field("profiles", &self.profiles)
            .field("env_files", &self.env_files.keys().collect::<Vec<_>>())
            .field("config_files", &names(&self.config_files))
            .field("config_env", &self.config_env.keys().collect::<Vec<_>>())
            .field("secret_files", &names(&self.secret_files))
            .field("secret_env", &names(&self.secret_env))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_of_a_registry_login_hides_the_password() {
        let auth = super::RegistryAuth {
            server: "r.example:5000".into(),
            username: "ci".into(),
            password: "hunter2".into(),
        };
        let plan = super::NodePlan {
            registry_auths: vec![auth],
            ..Default::default()
        };
        let text = format!("{plan:?}");
        assert!(
            text.contains("r.example:5000") && text.contains("<redacted>"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
        let req = super::SetRegistryAuthRequest {
            server: "r".into(),
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{req:?}").contains("hunter2"));
        let req = super::SetSecretRequest {
            name: "db".into(),
            value: b"hunter2".to_vec(),
            ..Default::default()
        };
        let text = format!("{req:?}");
        assert!(text.contains("db") && !text.contains("hunter2"), "{text}");
        let plan = super::NodePlan {
            secret_values: vec![super::SecretValue {
                env: "prod".into(),
                name: "db".into(),
                version: 3,
                value: b"hunter2".to_vec(),
            }],
            ..Default::default()
        };
        let text = format!("{plan:?}");
        assert!(text.contains("db") && !text.contains("hunter2"), "{text}");
        let req = super::ApplyRequest {
            secret_files: [("./db.txt".to_string(), b"hunter2".to_vec())].into(),
            secret_env: [("DB_PASSWORD".to_string(), b"hunter2".to_vec())].into(),
            ..Default::default()
        };
        let text = format!("{req:?}");
        assert!(
            text.contains("db.txt") && text.contains("DB_PASSWORD") && !text.contains("hunter2"),
            "{text}"
        );
    }
}

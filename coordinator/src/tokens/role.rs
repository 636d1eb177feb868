//! A token's role: what it may do (the matrix is in `api::rbac`), as the
//! CLI names it.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::TokenError;

/// What a token may do; see `api::control` for the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Deployer,
    Viewer,
    /// Enrols agents; never accepted as a CLI token.
    Join,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Deployer => "deployer",
            Role::Viewer => "viewer",
            Role::Join => "join",
        }
    }

    /// A role a CLI token may be created with.
    pub fn parse_cli(s: &str) -> Result<Role, TokenError> {
        match s {
            "admin" => Ok(Role::Admin),
            "deployer" => Ok(Role::Deployer),
            "viewer" => Ok(Role::Viewer),
            other => Err(TokenError::Invalid(format!(
                "unknown role `{other}`: use admin, deployer or viewer"
            ))),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

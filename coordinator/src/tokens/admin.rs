//! The admin token made on first start: its secret written to a file, or
//! its hash taken over from where earlier versions kept it.

use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;

use super::{Role, TokenError, TokenRecord};
use crate::{
    api::auth::{new_token, token_hash},
    pki,
    state::now_unix_ms,
    store::{self, Store},
};

/// The id of the admin token made on first start.
pub const ADMIN_ID: &str = "admin";
/// Before tokens had records, the admin token's hash lived here.
pub(super) const LEGACY_ADMIN_KEY: &str = "auth/admin";

#[derive(Deserialize)]
struct LegacyAdmin {
    sha256: String,
    created_unix_ms: i64,
}

/// The admin token's record: from `auth/admin` if an earlier version made
/// one, else a new token written to `path`.
pub(super) async fn admin_record(
    store: &dyn Store,
    path: &Path,
) -> Result<TokenRecord, TokenError> {
    let (sha256, created_unix_ms) =
        match store::get_json::<LegacyAdmin>(store, LEGACY_ADMIN_KEY).await? {
            Some(old) => (old.sha256, old.created_unix_ms),
            None => {
                let token = new_token();
                pki::write_private(path, format!("{token}\n").as_bytes()).map_err(|e| {
                    TokenError::AdminFile {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    }
                })?;
                (token_hash(&token), now_unix_ms())
            }
        };
    Ok(TokenRecord {
        id: ADMIN_ID.to_string(),
        name: ADMIN_ID.to_string(),
        role: Role::Admin,
        envs: Vec::new(),
        sha256,
        created_unix_ms,
        expires_unix_ms: 0,
        revoked: false,
        revoked_unix_ms: 0,
        created_by: "convoyd".to_string(),
        labels: BTreeMap::new(),
        uses_left: 0,
        node: String::new(),
    })
}

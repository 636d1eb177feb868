//! Where `convoy-agent` keeps its files by default (its systemd unit's
//! `StateDirectory=`), so the CLI can print a join line that runs as is.

/// The agent's key, certificate and the CA it trusts.
pub const PKI_DIR: &str = "/var/lib/convoy-agent/pki";
/// The agent's state (its last plan).
pub const DATA_DIR: &str = "/var/lib/convoy-agent/data";
/// Where the join line printed by `convoy token create --join` reads the
/// join token from (a file only root can read: no secret in `ps` or in the
/// shell's history).
pub const JOIN_TOKEN_FILE: &str = "/var/lib/convoy-agent/join.token";

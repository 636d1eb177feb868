//! `convoy registry login|ls|logout`: private registries' logins. The
//! password is read from standard input (`--password-stdin`, as `docker
//! login`), never from the command line, and never printed; the
//! coordinator stores it sealed and sends it only to the nodes that pull
//! from that registry.

use std::io::Read;

use anyhow::{bail, Context as _, Result};
use convoy_proto as pb;
use serde::Serialize;

use super::or_dash;
use crate::args::RegistryCommand;
use crate::commands::Output;
use crate::config::Flags;
use crate::output::{self, Format};

/// The most bytes read from standard input for a password.
const MAX_PASSWORD_BYTES: u64 = 16 * 1024;

#[derive(Debug, Serialize, PartialEq)]
pub struct RegistryJson {
    pub server: String,
    pub username: String,
    pub set_by: String,
    pub set_unix_ms: i64,
}

impl From<pb::RegistryAuthInfo> for RegistryJson {
    fn from(info: pb::RegistryAuthInfo) -> Self {
        let pb::RegistryAuthInfo {
            server,
            username,
            set_by,
            set_unix_ms,
        } = info;
        Self {
            server,
            username,
            set_by,
            set_unix_ms,
        }
    }
}

#[derive(Debug, Serialize)]
struct RegistryListJson {
    registries: Vec<RegistryJson>,
}

pub async fn registry(
    command: RegistryCommand,
    format: Format,
    flags: &Flags,
    now_ms: i64,
    stdin: &mut dyn Read,
) -> Result<Output> {
    match command {
        RegistryCommand::Login {
            server,
            username,
            password_stdin,
        } => {
            if !password_stdin {
                bail!(
                    "pass the password on standard input with --password-stdin \
                     (e.g. `cat pw.txt | convoy registry login {server} -u {username} \
                     --password-stdin`); it never goes on the command line"
                );
            }
            let password = read_password(stdin)?;
            let mut coordinator = crate::commands::connect(flags).await?;
            let info = coordinator
                .set_registry_auth(pb::SetRegistryAuthRequest {
                    server,
                    username,
                    password,
                })
                .await?;
            let info = RegistryJson::from(info);
            Ok(Output::stdout(match format {
                Format::Json => output::json(&info),
                Format::Table => format!(
                    "logged in to {} as {}: nodes that pull from it get the login\n",
                    info.server, info.username
                ),
            }))
        }
        RegistryCommand::Ls => {
            let mut coordinator = crate::commands::connect(flags).await?;
            let resp = coordinator.list_registry_auth().await?;
            let registries: Vec<RegistryJson> = resp
                .registries
                .into_iter()
                .map(RegistryJson::from)
                .collect();
            Ok(Output::stdout(match format {
                Format::Json => output::json(&RegistryListJson { registries }),
                Format::Table => registries_table(&registries, now_ms),
            }))
        }
        RegistryCommand::Logout { server } => {
            let mut coordinator = crate::commands::connect(flags).await?;
            let info = RegistryJson::from(coordinator.remove_registry_auth(server).await?);
            Ok(Output::stdout(match format {
                Format::Json => output::json(&info),
                Format::Table => format!("removed the login of {}\n", info.server),
            }))
        }
    }
}

/// The password from standard input, without the line end `echo` or a
/// file adds (as `docker login --password-stdin`).
fn read_password(stdin: &mut dyn Read) -> Result<String> {
    let mut password = String::new();
    stdin
        .take(MAX_PASSWORD_BYTES + 1)
        .read_to_string(&mut password)
        .context("reading the password from standard input")?;
    if password.len() as u64 > MAX_PASSWORD_BYTES {
        bail!("the password on standard input is over {MAX_PASSWORD_BYTES} bytes");
    }
    let trimmed = password.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        bail!("standard input held no password (--password-stdin reads it from there)");
    }
    Ok(trimmed.to_string())
}

fn registries_table(registries: &[RegistryJson], now_ms: i64) -> String {
    if registries.is_empty() {
        return "no registry logins\n".to_owned();
    }
    let rows: Vec<Vec<String>> = registries
        .iter()
        .map(|r| {
            vec![
                r.server.clone(),
                r.username.clone(),
                or_dash(&r.set_by),
                format!("{} ago", output::format_age(now_ms - r.set_unix_ms)),
            ]
        })
        .collect();
    output::table(&["SERVER", "USERNAME", "SET BY", "SET"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_comes_from_stdin_without_its_line_end() {
        let mut input: &[u8] = b"s3cret pass\n";
        assert_eq!(read_password(&mut input).unwrap(), "s3cret pass");
        let mut input: &[u8] = b"tok\r\n";
        assert_eq!(read_password(&mut input).unwrap(), "tok");
        let mut input: &[u8] = b"\n";
        let err = read_password(&mut input).unwrap_err().to_string();
        assert!(err.contains("no password"), "{err}");
        let big = vec![b'x'; (MAX_PASSWORD_BYTES + 10) as usize];
        let err = read_password(&mut big.as_slice()).unwrap_err().to_string();
        assert!(err.contains("over"), "{err}");
    }

    #[tokio::test]
    async fn login_without_password_stdin_is_refused_before_dialing() {
        let command = RegistryCommand::Login {
            server: "r.example".into(),
            username: "ci".into(),
            password_stdin: false,
        };
        let flags = Flags::default();
        let mut input: &[u8] = b"";
        let err = registry(command, Format::Table, &flags, 0, &mut input)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--password-stdin"), "{err}");
    }

    #[test]
    fn the_list_never_has_a_password_column() {
        let table = registries_table(
            &[RegistryJson {
                server: "127.0.0.1:5000".into(),
                username: "ci".into(),
                set_by: "admin (abcd)".into(),
                set_unix_ms: 0,
            }],
            60_000,
        );
        assert!(
            table.contains("127.0.0.1:5000") && table.contains("ci"),
            "{table}"
        );
        assert!(!table.to_lowercase().contains("password"), "{table}");
    }
}

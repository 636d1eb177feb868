//! `convoy secret set|generate|list|rotate|history|rm`: the secrets of an
//! environment (`--env`). A value is read from standard input or
//! `--from-file`, never from the command line, and is never printed: the
//! coordinator seals it, and answers with names, versions, times and
//! tokens only. Generated values are drawn on the coordinator.

use std::io::{IsTerminal as _, Read};
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use convoy_proto as pb;

use super::or_dash;
use crate::args::{SecretCharset, SecretCommand};
use crate::commands::{selected_env, service_env, Output};
use crate::config::Flags;
use crate::output::{self, Format, SecretHistoryJson, SecretJson, SecretListJson};

/// The largest value (the coordinator refuses larger ones too).
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

pub async fn secret(
    command: SecretCommand,
    format: Format,
    flags: &Flags,
    now_ms: i64,
    stdin: &mut dyn Read,
) -> Result<Output> {
    let stdin_is_terminal = std::io::stdin().is_terminal();
    match command {
        SecretCommand::Set { name, from_file } => {
            let value = read_value(&name, from_file.as_deref(), stdin, stdin_is_terminal)?;
            let mut coordinator = crate::commands::connect(flags).await?;
            let info = coordinator
                .set_secret(pb::SetSecretRequest {
                    env: service_env(),
                    name,
                    value,
                    rotate: false,
                })
                .await?;
            Ok(written(info.into(), "stored", format))
        }
        SecretCommand::Generate {
            name,
            length,
            charset,
        } => {
            let mut coordinator = crate::commands::connect(flags).await?;
            let info = coordinator
                .generate_secret(generate(name, Some(length), Some(charset), false))
                .await?;
            Ok(written(info.into(), "generated", format))
        }
        SecretCommand::Rotate {
            name,
            generate: true,
            length,
            charset,
            ..
        } => {
            let mut coordinator = crate::commands::connect(flags).await?;
            let info = coordinator
                .generate_secret(generate(name, length, charset, true))
                .await?;
            Ok(written(info.into(), "rotated", format))
        }
        SecretCommand::Rotate {
            name, from_file, ..
        } => {
            let value = read_value(&name, from_file.as_deref(), stdin, stdin_is_terminal)?;
            let mut coordinator = crate::commands::connect(flags).await?;
            let info = coordinator
                .set_secret(pb::SetSecretRequest {
                    env: service_env(),
                    name,
                    value,
                    rotate: true,
                })
                .await?;
            Ok(written(info.into(), "rotated", format))
        }
        SecretCommand::List => {
            let mut coordinator = crate::commands::connect(flags).await?;
            let resp = coordinator.list_secrets(selected_env()).await?;
            let secrets: Vec<SecretJson> = resp.secrets.into_iter().map(Into::into).collect();
            Ok(Output::stdout(match format {
                Format::Json => output::json(&SecretListJson { secrets }),
                Format::Table => secrets_table(&secrets, now_ms),
            }))
        }
        SecretCommand::History { name } => {
            let mut coordinator = crate::commands::connect(flags).await?;
            let resp = coordinator.secret_history(service_env(), name).await?;
            let secret = SecretJson::from(resp.secret.unwrap_or_default());
            let history = SecretHistoryJson {
                env: secret.env,
                name: secret.name,
                versions: resp.versions.into_iter().map(Into::into).collect(),
            };
            Ok(Output::stdout(match format {
                Format::Json => output::json(&history),
                Format::Table => history_table(&history, now_ms),
            }))
        }
        SecretCommand::Rm { name } => {
            let mut coordinator = crate::commands::connect(flags).await?;
            let info = SecretJson::from(coordinator.remove_secret(service_env(), name).await?);
            Ok(Output::stdout(match format {
                Format::Json => output::json(&info),
                Format::Table => format!(
                    "removed secret {} from environment {} ({} versions)\n",
                    info.name, info.env, info.versions
                ),
            }))
        }
    }
}

fn generate(
    name: String,
    length: Option<u32>,
    charset: Option<SecretCharset>,
    rotate: bool,
) -> pb::GenerateSecretRequest {
    let charset = match charset.unwrap_or(SecretCharset::Alnum) {
        SecretCharset::Alnum => "alnum",
        SecretCharset::Hex => "hex",
        SecretCharset::Base64 => "base64",
        SecretCharset::Urlsafe => "urlsafe",
    };
    pb::GenerateSecretRequest {
        env: service_env(),
        name,
        length: length.unwrap_or(0),
        charset: charset.to_string(),
        rotate,
    }
}

/// The answer to a write: what was done, never the value.
fn written(info: SecretJson, did: &str, format: Format) -> Output {
    Output::stdout(match format {
        Format::Json => output::json(&info),
        Format::Table => {
            let mut text = format!(
                "{did} secret {} in environment {}: version {}\n",
                info.name, info.env, info.version
            );
            // A rotation rolls each consumer onto the new version.
            if did == "rotated" && !info.used_by.is_empty() {
                text += &format!(
                    "rolling out to {} (`convoy status --watch` follows it)\n",
                    info.used_by.join(", ")
                );
            }
            text
        }
    })
}

/// The value: the file's bytes exactly, or standard input without one
/// trailing newline (`echo` adds it). At most [`MAX_SECRET_BYTES`] are read;
/// an empty value is refused. Standard input that is a terminal is refused
/// too: what is typed there is echoed.
fn read_value(
    name: &str,
    from_file: Option<&Path>,
    stdin: &mut dyn Read,
    stdin_is_terminal: bool,
) -> Result<Vec<u8>> {
    let mut value = Vec::new();
    match from_file {
        Some(path) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot read secret `{name}` from {}", path.display()))?;
            file.take(MAX_SECRET_BYTES + 1)
                .read_to_end(&mut value)
                .with_context(|| format!("cannot read secret `{name}` from {}", path.display()))?;
        }
        None => {
            if stdin_is_terminal {
                bail!(
                    "pass the value of secret `{name}` on standard input (e.g. `convoy secret \
                     set {name} < FILE`) or with --from-file FILE; it never goes on the \
                     command line"
                );
            }
            stdin
                .take(MAX_SECRET_BYTES + 1)
                .read_to_end(&mut value)
                .with_context(|| format!("reading secret `{name}` from standard input"))?;
            if value.ends_with(b"\r\n") {
                value.truncate(value.len() - 2);
            } else if value.ends_with(b"\n") {
                value.truncate(value.len() - 1);
            }
        }
    }
    if value.len() as u64 > MAX_SECRET_BYTES {
        bail!("the value of secret `{name}` is over {MAX_SECRET_BYTES} bytes");
    }
    if value.is_empty() {
        bail!(
            "the value of secret `{name}` is empty ({})",
            match from_file {
                Some(path) => format!("{} holds nothing", path.display()),
                None => "standard input held nothing".to_string(),
            }
        );
    }
    Ok(value)
}

fn secrets_table(secrets: &[SecretJson], now_ms: i64) -> String {
    if secrets.is_empty() {
        return "no secrets\n".to_owned();
    }
    let rows: Vec<Vec<String>> = secrets
        .iter()
        .map(|s| {
            vec![
                s.env.clone(),
                s.name.clone(),
                s.version.to_string(),
                format!("{} ago", output::format_age(now_ms - s.updated_unix_ms)),
                or_dash(&s.updated_by),
                or_dash(&s.used_by.join(",")),
            ]
        })
        .collect();
    output::table(
        &["ENV", "NAME", "VERSION", "UPDATED", "BY", "USED BY"],
        &rows,
    )
}

fn history_table(history: &SecretHistoryJson, now_ms: i64) -> String {
    let rows: Vec<Vec<String>> = history
        .versions
        .iter()
        .map(|v| {
            vec![
                format!("{}{}", v.version, if v.current { " *" } else { "" }),
                format!("{} ago", output::format_age(now_ms - v.created_unix_ms)),
                or_dash(&v.created_by),
                v.origin.clone(),
            ]
        })
        .collect();
    format!(
        "secret {} in environment {} (* current)\n{}",
        history.name,
        history.env,
        output::table(&["VERSION", "CREATED", "BY", "HOW"], &rows)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_comes_from_stdin_without_one_line_end_or_exactly_from_a_file() {
        let mut input: &[u8] = b"s3cret value\n";
        let v = read_value("db", None, &mut input, false).unwrap();
        assert_eq!(&v[..], b"s3cret value");
        let mut input: &[u8] = b"tok\r\n";
        assert_eq!(
            &read_value("db", None, &mut input, false).unwrap()[..],
            b"tok"
        );
        let mut input: &[u8] = b"two\n\n";
        assert_eq!(
            &read_value("db", None, &mut input, false).unwrap()[..],
            b"two\n"
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("v");
        std::fs::write(&file, b"line\n").unwrap();
        let mut none: &[u8] = b"";
        assert_eq!(
            &read_value("db", Some(&file), &mut none, false).unwrap()[..],
            b"line\n"
        );
    }

    #[test]
    fn an_empty_huge_or_typed_value_is_refused_naming_the_secret() {
        let mut input: &[u8] = b"\n";
        let err = read_value("db", None, &mut input, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`db`") && err.contains("empty"), "{err}");
        let big = vec![b'x'; MAX_SECRET_BYTES as usize + 1];
        let err = read_value("db", None, &mut big.as_slice(), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`db`") && err.contains("65536"), "{err}");
        let exact = vec![b'x'; MAX_SECRET_BYTES as usize];
        assert!(read_value("db", None, &mut exact.as_slice(), false).is_ok());
        let mut input: &[u8] = b"typed";
        let err = read_value("db", None, &mut input, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--from-file"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        let err = read_value("db", Some(&empty), &mut input, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds nothing"), "{err}");
        let err = read_value("db", Some(&dir.path().join("absent")), &mut input, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("absent") && err.contains("`db`"), "{err}");
    }

    #[test]
    fn tables_show_names_versions_and_who_never_a_value_column() {
        let info = pb::SecretInfo {
            env: "prod".into(),
            name: "db-password".into(),
            version: 3,
            updated_unix_ms: 0,
            updated_by: "abcd (deployer)".into(),
            versions: 3,
            used_by: vec![],
            origin: "set".into(),
        };
        let table = secrets_table(&[SecretJson::from(info)], 60_000);
        assert!(
            table.contains("db-password") && table.contains("prod") && table.contains("3"),
            "{table}"
        );
        assert!(!table.to_lowercase().contains("value"), "{table}");
        assert_eq!(secrets_table(&[], 0), "no secrets\n");
    }
}

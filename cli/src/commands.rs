//! The subcommands: each reads its input, makes one call to the coordinator
//! and renders the answer as a table or as JSON.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context as _, Result};
use convoy_proto::{ApplyRequest, DeleteRequest, StatusRequest, VerifyRequest, WatchRequest};

pub use crate::args::{Command, NodeCommand, RolloutCommand};
use crate::client::{Coordinator, RolloutVerb};
use crate::config::{self, ConfigFile, Env, Flags};
use crate::output::{self, DeleteJson, Format};
use crate::trust;

/// What to print: `stderr` first (warnings), then `stdout`; and the exit
/// status (a failed `verify` prints its report and exits 1).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub exit: u8,
}

impl Output {
    pub(crate) fn stdout(text: String) -> Self {
        Self {
            stdout: text,
            ..Self::default()
        }
    }
}

/// The environment `--env` (or `CONVOY_ENV`) selected; empty: the
/// coordinator's default for writes, every environment for reads.
static SELECTED_ENV: std::sync::OnceLock<SelectedEnv> = std::sync::OnceLock::new();

/// The environment selected for this run, and whether it came from the
/// `CONVOY_ENV` variable rather than `--env` on the command line.
#[derive(Debug, Clone)]
pub struct SelectedEnv {
    pub name: String,
    pub from_variable: bool,
}

pub(crate) fn selected_env() -> String {
    SELECTED_ENV
        .get()
        .map(|e| e.name.clone())
        .unwrap_or_default()
}

/// Whether the selected environment came from `CONVOY_ENV`.
pub(crate) fn selected_env_from_variable() -> bool {
    SELECTED_ENV.get().is_some_and(|e| e.from_variable)
}

/// The environment a command on one service acts on: `--env`/`CONVOY_ENV`,
/// else `default` (never "any": a service name can exist in several).
pub(crate) fn service_env() -> String {
    convoy_api::env::or_default(&selected_env()).to_string()
}

/// Runs one command; `env` is the environment it applies to (`--env`).
pub async fn run_in(
    command: Command,
    format: Format,
    flags: &Flags,
    env: Option<SelectedEnv>,
) -> Result<Output> {
    if let Some(env) = env {
        let _ = SELECTED_ENV.set(env);
    }
    run(command, format, flags).await
}

pub async fn run(command: Command, format: Format, flags: &Flags) -> Result<Output> {
    match command {
        Command::Apply {
            files,
            env_files,
            profiles,
            dry_run,
            wait: false,
            ..
        } => apply(&files, &env_files, profiles, dry_run, format, flags).await,
        Command::Apply {
            files,
            env_files,
            profiles,
            wait: true,
            timeout,
            ..
        } => {
            crate::rollouts::apply_and_wait(&files, &env_files, profiles, timeout, format, flags)
                .await
        }
        Command::Rollout {
            command: RolloutCommand::Status { service, watch },
        } => crate::rollouts::status(service, watch, format, flags).await,
        Command::Rollout {
            command: RolloutCommand::Pause { service },
        } => crate::rollouts::steer(service, RolloutVerb::Pause, format, flags).await,
        Command::Rollout {
            command: RolloutCommand::Resume { service },
        } => crate::rollouts::steer(service, RolloutVerb::Resume, format, flags).await,
        Command::Rollout {
            command: RolloutCommand::Abort { service },
        } => crate::rollouts::abort(service, format, flags).await,
        Command::Promote { service } => {
            crate::rollouts::steer(service, RolloutVerb::Promote, format, flags).await
        }
        Command::History { service } => crate::rollouts::history(service, format, flags).await,
        Command::Rollback { services, to } => {
            crate::rollouts::rollback(services, to, format, flags).await
        }
        Command::Diff { service, from, to } => {
            crate::rollouts::diff(service, from, to, format, flags).await
        }
        Command::Plan {
            files,
            env_files,
            profiles,
        } => apply(&files, &env_files, profiles, true, format, flags).await,
        Command::Status {
            service,
            watch: false,
        } => status(service, format, flags).await,
        Command::Status {
            service,
            watch: true,
        } => watch_status(service, format, flags).await,
        Command::Events {
            service,
            node,
            replay,
        } => events(service, node, replay, format, flags).await,
        Command::Verify { service, timeout } => verify(service, timeout, format, flags).await,
        Command::Nodes => nodes(format, flags).await,
        Command::Delete { service, volumes } => delete(service, volumes, format, flags).await,
        Command::Node {
            command: NodeCommand::Remove { node },
        } => remove_node(node, format, flags).await,
        Command::Node { command } => crate::drain::run(command, format, flags).await,
        Command::Token { command } => trust::token(command, format, flags, now_ms()).await,
        Command::Registry { command } => {
            trust::registry(
                command,
                format,
                flags,
                now_ms(),
                &mut std::io::stdin().lock(),
            )
            .await
        }
        Command::Secret { command } => {
            trust::secret(
                command,
                format,
                flags,
                now_ms(),
                &mut std::io::stdin().lock(),
            )
            .await
        }
        Command::Audit { since } => trust::audit(since, format, flags, now_ms()).await,
        Command::Context { command } => trust::context(command, format, flags),
        Command::Volumes { command } => crate::volumes::run(command, format, flags).await,
        Command::Logs(args) => crate::logs::run(args, flags).await,
        Command::Exec(args) => crate::exec::run(crate::exec::Kind::Exec, args, flags).await,
        Command::Run(args) => crate::exec::run(crate::exec::Kind::Run, args, flags).await,
        Command::Notify { command } => {
            crate::notify::run(
                command,
                format,
                flags,
                now_ms(),
                &mut std::io::stdin().lock(),
            )
            .await
        }
        Command::Completion { shell } => {
            let mut script = Vec::new();
            convoy_api::shell_docs::write_completion(
                <crate::args::Cli as clap::CommandFactory>::command(),
                shell.into(),
                &mut script,
            );
            Ok(Output::stdout(
                String::from_utf8_lossy(&script).into_owned(),
            ))
        }
        Command::GenerateDocs { dir } => {
            let written = convoy_api::shell_docs::generate(
                <crate::args::Cli as clap::CommandFactory>::command(),
                &dir,
            )
            .with_context(|| {
                format!(
                    "cannot write completions and man pages into {}",
                    dir.display()
                )
            })?;
            Ok(Output::stdout(
                written
                    .iter()
                    .map(|p| format!("{}\n", p.display()))
                    .collect(),
            ))
        }
    }
}

pub(crate) async fn remove_node(node: String, format: Format, flags: &Flags) -> Result<Output> {
    let mut coordinator = connect(flags).await?;
    let response = coordinator.remove_node(node.clone()).await?;
    let removed = output::NodeRemovedJson::new(&node, &response);
    Ok(Output::stdout(match format {
        Format::Table => output::node_removed_line(&removed),
        Format::Json => output::json(&removed),
    }))
}

async fn apply(
    files: &[std::path::PathBuf],
    env_files: &[std::path::PathBuf],
    profiles: Vec<String>,
    dry_run: bool,
    format: Format,
    flags: &Flags,
) -> Result<Output> {
    // The file is read before dialing: a typo in its name needs no coordinator.
    let spec = load_spec(files, env_files)?;
    let env = apply_env(&spec)?;
    let env_files = wire_env_files(spec.env_files);
    let (filename, content) = (spec.filename, spec.content);
    let mut coordinator = connect(flags).await?;
    let response = coordinator
        .apply(ApplyRequest {
            filename,
            content,
            dry_run,
            env,
            profiles,
            env_files,
            config_files: spec.configs.files,
            config_env: spec.configs.env,
            secret_files: spec.secrets.files,
            secret_env: spec.secrets.env,
        })
        .await?;
    Ok(match format {
        Format::Table => Output {
            stdout: output::apply_table(&response),
            stderr: output::apply_warnings(&response),
            exit: 0,
        },
        Format::Json => Output::stdout(output::json(&output::ApplyJson::from(&response))),
    })
}

async fn status(service: Option<String>, format: Format, flags: &Flags) -> Result<Output> {
    let mut coordinator = connect(flags).await?;
    let response = coordinator
        .status(StatusRequest {
            service: service.unwrap_or_default(),
            env: selected_env(),
        })
        .await?;
    Ok(Output::stdout(match format {
        Format::Table => output::status_table(&response, now_ms()),
        Format::Json => output::json(&output::StatusJson::from(&response)),
    }))
}

pub(crate) fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

/// Prints the status, then again after every change the event stream
/// announces (a burst of events gives one redraw). Ends with the stream.
async fn watch_status(service: Option<String>, format: Format, flags: &Flags) -> Result<Output> {
    let service = service.unwrap_or_default();
    let mut coordinator = connect(flags).await?;
    let mut stream = coordinator
        .watch(WatchRequest {
            service: service.clone(),
            env: selected_env(),
            ..Default::default()
        })
        .await?;
    let tty = std::io::stdout().is_terminal();
    loop {
        let response = coordinator
            .status(StatusRequest {
                service: service.clone(),
                env: selected_env(),
            })
            .await?;
        let text = match format {
            Format::Json => {
                let mut line = serde_json::to_string(&output::StatusJson::from(&response))?;
                line.push('\n');
                line
            }
            Format::Table if tty => format!(
                "\x1b[H\x1b[2J{}\n(watching; Ctrl-C to stop)\n",
                output::status_table(&response, now_ms())
            ),
            Format::Table => format!(
                "--- {}\n{}",
                output::rfc3339_ms(now_ms()),
                output::status_table(&response, now_ms())
            ),
        };
        print(&text)?;
        // Wait for a change, then let the burst settle.
        if coordinator.next_event(&mut stream).await?.is_none() {
            return Ok(Output::default());
        }
        let settle = tokio::time::sleep(Duration::from_millis(150));
        tokio::pin!(settle);
        loop {
            tokio::select! {
                _ = &mut settle => break,
                ev = coordinator.next_event(&mut stream) => {
                    if ev?.is_none() {
                        return Ok(Output::default());
                    }
                }
            }
        }
    }
}

async fn events(
    service: Option<String>,
    node: Option<String>,
    replay: bool,
    format: Format,
    flags: &Flags,
) -> Result<Output> {
    let mut coordinator = connect(flags).await?;
    let mut stream = coordinator
        .watch(WatchRequest {
            service: service.unwrap_or_default(),
            node: node.unwrap_or_default(),
            env: selected_env(),
            replay,
        })
        .await?;
    while let Some(ev) = coordinator.next_event(&mut stream).await? {
        let text = match format {
            Format::Table => output::event_line(&ev),
            Format::Json => {
                let mut line = serde_json::to_string(&output::EventJson::from(&ev))?;
                line.push('\n');
                line
            }
        };
        print(&text)?;
    }
    Err(anyhow!("the coordinator ended the event stream"))
}

async fn verify(
    service: Option<String>,
    timeout_secs: u64,
    format: Format,
    flags: &Flags,
) -> Result<Output> {
    let mut coordinator = connect(flags).await?;
    let response = coordinator
        .verify(VerifyRequest {
            service: service.unwrap_or_default(),
            env: selected_env(),
            timeout_ms: timeout_secs.saturating_mul(1000),
        })
        .await?;
    let mut out = Output::stdout(match format {
        Format::Table => output::verify_table(&response),
        Format::Json => output::json(&output::VerifyJson::from(&response)),
    });
    if !response.healthy {
        out.exit = 1;
    }
    Ok(out)
}

async fn nodes(format: Format, flags: &Flags) -> Result<Output> {
    let mut coordinator = connect(flags).await?;
    let response = coordinator.list_nodes().await?;
    Ok(Output::stdout(match format {
        Format::Table => output::nodes_table(&response, now_ms()),
        Format::Json => output::json(&output::NodesJson::from(&response)),
    }))
}

async fn delete(service: String, volumes: bool, format: Format, flags: &Flags) -> Result<Output> {
    let mut coordinator = connect(flags).await?;
    // Empty env: the coordinator applies its default.
    let env = selected_env();
    let response = coordinator
        .delete(DeleteRequest {
            service: service.clone(),
            env: env.clone(),
            volumes,
        })
        .await?;
    let deleted = DeleteJson::new(&service, &env, &response);
    Ok(Output::stdout(match format {
        Format::Table => output::delete_line(&deleted),
        Format::Json => output::json(&deleted),
    }))
}

pub(crate) async fn connect(flags: &Flags) -> Result<Coordinator> {
    let env = Env::from_process();
    let path = config::default_path();
    let file = match &path {
        Some(path) => Some(ConfigFile::load(path)?),
        None => None,
    };
    let settings = config::resolve(flags, &env, path.as_deref().zip(file.as_ref()))?;
    Coordinator::connect(&settings).await
}

/// The env files' variables as `ApplyRequest.env_files` carries them.
pub(crate) fn wire_env_files(
    files: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
) -> std::collections::BTreeMap<String, convoy_proto::EnvFileVars> {
    files
        .into_iter()
        .map(|(path, vars)| (path, convoy_proto::EnvFileVars { vars }))
        .collect()
}

/// The environment `spec` is applied to: see [`LoadedSpec::environment_with`].
pub(crate) fn apply_env(spec: &crate::compose::LoadedSpec) -> Result<String> {
    let given_by = if selected_env_from_variable() {
        "CONVOY_ENV"
    } else {
        "--env"
    };
    spec.environment_with(&selected_env(), given_by)
}

/// Reads and interpolates the spec `file`, printing interpolation's
/// warnings (unset variables) on stderr.
pub(crate) fn load_spec(
    files: &[std::path::PathBuf],
    env_files: &[std::path::PathBuf],
) -> Result<crate::compose::LoadedSpec> {
    // `.env` beside the first file, as Compose's project directory.
    let first = files.first().map_or(Path::new("-"), |f| f.as_path());
    let vars = crate::compose::Variables::load(first, env_files)?;
    let spec = crate::compose::load_all(files, &vars)?;
    for warning in &spec.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(spec)
}

/// The spec's name for error messages (as given) and its text, refused
/// before anything is sent when it is larger than the coordinator reads
/// (`CONVOY_MAX_SPEC_BYTES`, as `convoyd --max-spec-bytes`; default 1 MiB)
/// or not UTF-8 text.
pub(crate) fn read_spec(file: &Path) -> Result<(String, String)> {
    read_spec_limited(file, max_spec_bytes()?)
}

/// The most bytes a spec may hold (`CONVOY_MAX_SPEC_BYTES`, default 1 MiB),
/// its configs' files and variables included.
pub(crate) fn max_spec_bytes() -> Result<usize> {
    match std::env::var("CONVOY_MAX_SPEC_BYTES") {
        Ok(text) => convoy_api::limits::parse_bytes(&text)
            .map_err(|e| anyhow!("CONVOY_MAX_SPEC_BYTES: {e}")),
        Err(_) => Ok(convoy_api::limits::DEFAULT_MAX_SPEC_BYTES),
    }
}

fn read_spec_limited(file: &Path, max: usize) -> Result<(String, String)> {
    let name = if file == Path::new("-") {
        "<stdin>".to_owned()
    } else {
        file.display().to_string()
    };
    let too_large = |size: usize| {
        anyhow!(
            "{name}: {}",
            convoy_api::limits::spec_too_large(
                size,
                max,
                "the limit with `CONVOY_MAX_SPEC_BYTES` here and `convoyd --max-spec-bytes` on the coordinator"
            )
        )
    };
    // At most one byte over the limit is read: a huge file is refused
    // without reading it into memory.
    let mut bytes = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    if file == Path::new("-") {
        std::io::stdin()
            .take(limit)
            .read_to_end(&mut bytes)
            .context("cannot read the spec from stdin")?;
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("cannot read {name}"))?;
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        if size > max as u64 {
            return Err(too_large(usize::try_from(size).unwrap_or(usize::MAX)));
        }
        f.take(limit)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {name}"))?;
    }
    if bytes.len() > max {
        return Err(too_large(bytes.len()));
    }
    let content = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let before = &e.as_bytes()[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        anyhow!("{name}:{line}: the file is not UTF-8 text (byte {at}); save it as UTF-8")
    })?;
    Ok((name, content))
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_spec_file_is_named_in_the_error() {
        let err = read_spec(Path::new("no/such/spec.yaml")).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "cannot read no/such/spec.yaml: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn a_spec_over_the_limit_or_not_utf8_is_refused_before_sending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.yaml");
        std::fs::write(&path, "x".repeat(2048)).unwrap();
        let err = read_spec_limited(&path, 1024).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}: the spec is 2 KiB (2048 bytes), over the limit of 1 KiB (1024 bytes); \
                 split it into several files or raise the limit with `CONVOY_MAX_SPEC_BYTES` \
                 here and `convoyd --max-spec-bytes` on the coordinator",
                path.display()
            )
        );
        assert!(read_spec_limited(&path, 2048).is_ok());
        std::fs::write(&path, b"services:\n  a: \xff\n").unwrap();
        let err = read_spec_limited(&path, 1024).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}:2: the file is not UTF-8 text (byte 15); save it as UTF-8",
                path.display()
            )
        );
    }

    #[test]
    fn the_spec_keeps_the_path_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hello.yaml");
        std::fs::write(&path, "services: {}\n").unwrap();
        let (filename, content) = read_spec(&path).unwrap();
        assert_eq!(filename, path.display().to_string());
        assert_eq!(content, "services: {}\n");
    }
}

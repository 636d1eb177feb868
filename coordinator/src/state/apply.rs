//! `apply`: a spec file (with its options) is parsed under the
//! coordinator's limits, staged into new revisions and placements, checked
//! and committed, and the rollouts that bring instances to them start.

use super::*;

/// What an apply request brings beside the spec file.
#[derive(Clone, Debug, Default)]
pub struct ApplyOptions {
    /// Compose profiles enabled (`--profile`): a service with `profiles:`
    /// is applied only when one of them is, and is otherwise skipped with a
    /// warning.
    pub profiles: Vec<String>,
    /// The env files the CLI read for the services' `env_file:`.
    pub env_files: spec::EnvFiles,
    /// The files and variables the CLI read for the top-level `configs:`.
    pub configs: spec::ConfigInputs,
    /// The files and variables the CLI read for the top-level `secrets:`.
    pub secrets: spec::SecretInputs,
    /// The caller is an admin. Otherwise a spec with `units:` is refused: a
    /// unit runs its command as root on the host, an admin's decision.
    pub may_run_units: bool,
}

/// How many spec files are parsed at once, each on a blocking thread: a
/// flood of applies waits for a permit instead of taking every thread.
const SPEC_PARSE_PERMITS: usize = 2;

/// Parses spec files on tokio's blocking pool, at most
/// [`SPEC_PARSE_PERMITS`] at once, under the coordinator's [`spec::Limits`].
pub(super) struct SpecReader {
    limits: std::sync::RwLock<spec::Limits>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl Default for SpecReader {
    fn default() -> Self {
        SpecReader {
            limits: std::sync::RwLock::new(spec::Limits::default()),
            permits: Arc::new(tokio::sync::Semaphore::new(SPEC_PARSE_PERMITS)),
        }
    }
}

impl SpecReader {
    fn limits(&self) -> spec::Limits {
        self.limits.read().map(|l| *l).unwrap_or_default()
    }

    /// Parses `content`: the size is checked here, the rest on a blocking
    /// thread, so that no spec holds an async worker (the API, `/healthz`
    /// and the agents' heartbeats run there).
    async fn parse(
        &self,
        filename: &str,
        content: &str,
        env_files: &spec::EnvFiles,
        configs: &spec::ConfigInputs,
        secrets: &spec::SecretInputs,
    ) -> Result<spec::SpecFile, StateError> {
        let limits = self.limits();
        if content.len() > limits.max_bytes {
            return Err(spec::parse_with(filename, content.as_bytes(), &limits)
                .err()
                .map(StateError::Spec)
                .unwrap_or_else(|| StateError::Invalid("the spec is too large".into())));
        }
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StateError::Invalid("the coordinator is shutting down".into()))?;
        let (filename, content) = (filename.to_owned(), content.to_owned());
        let env_files = env_files.clone();
        let configs = configs.clone();
        let secrets = secrets.clone();
        let parsed = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            spec::parse_with_inputs(
                &filename,
                content.as_bytes(),
                &limits,
                &env_files,
                &configs,
                &secrets,
            )
        })
        .await
        .map_err(|e| StateError::Invalid(format!("reading the spec failed: {e}")))?;
        Ok(parsed?)
    }
}

impl Coordinator {
    /// Sets the limits spec files are read under (`convoyd --max-spec-bytes`).
    pub fn set_spec_limits(&self, limits: spec::Limits) {
        if let Ok(mut current) = self.specs.limits.write() {
            *current = limits;
        }
    }

    /// The limits spec files are read under.
    pub fn spec_limits(&self) -> spec::Limits {
        self.specs.limits()
    }

    /// Validates a spec file and, unless `dry_run`, stores a new revision of
    /// every service whose spec changed and hands the new plans to agents.
    pub async fn apply(
        &self,
        filename: &str,
        content: &str,
        dry_run: bool,
        who: &str,
    ) -> Result<ApplyOutcome, StateError> {
        self.apply_in(DEFAULT_ENV, filename, content, dry_run, who)
            .await
    }

    /// [`Self::apply`] into environment `env`.
    pub async fn apply_in(
        &self,
        env: &str,
        filename: &str,
        content: &str,
        dry_run: bool,
        who: &str,
    ) -> Result<ApplyOutcome, StateError> {
        let options = ApplyOptions {
            may_run_units: true,
            ..ApplyOptions::default()
        };
        self.apply_with(env, filename, content, &options, dry_run, who)
            .await
    }

    /// [`Self::apply_in`] with what the request brings beside the file
    /// (see [`ApplyOptions`]).
    pub async fn apply_with(
        &self,
        env: &str,
        filename: &str,
        content: &str,
        options: &ApplyOptions,
        dry_run: bool,
        who: &str,
    ) -> Result<ApplyOutcome, StateError> {
        let env = if env.is_empty() { DEFAULT_ENV } else { env };
        check_env_name(env)?;
        let started = std::time::Instant::now();
        // Pre-deploy hooks (`hooks.rs`): staged once to learn which run,
        // run with no lock held, then the apply for real.
        if !dry_run && content.contains("pre_deploy") {
            let mut hooks = Vec::new();
            self.apply_inner(env, filename, content, options, true, who, Some(&mut hooks))
                .await?;
            for hook in &hooks {
                self.run_hook(hook).await?;
            }
        }
        let result = self
            .apply_inner(env, filename, content, options, dry_run, who, None)
            .await;
        if !dry_run {
            self.metrics.observe_apply(started.elapsed().as_secs_f64());
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn apply_inner(
        &self,
        env: &str,
        filename: &str,
        content: &str,
        options: &ApplyOptions,
        dry_run: bool,
        who: &str,
        hooks: Option<&mut Vec<super::hooks::HookRun>>,
    ) -> Result<ApplyOutcome, StateError> {
        let profiles = &options.profiles[..];
        let mut file = self
            .specs
            .parse(
                filename,
                content,
                &options.env_files,
                &options.configs,
                &options.secrets,
            )
            .await?;
        if !options.may_run_units {
            if let Some(name) = file
                .services
                .iter()
                .find(|(_, s)| s.is_unit())
                .map(|(n, _)| n)
            {
                return Err(StateError::NotAllowed(format!(
                    "{filename}: units.{name}: a unit runs its command as root on the host, \
                     so only an admin token may apply `units:` (ask an admin to apply this \
                     file, or deploy the service as a container under `services:`)"
                )));
            }
        }
        let skipped: Vec<String> = file
            .services
            .iter()
            .filter(|(_, spec)| !spec.in_profiles(profiles))
            .map(|(name, spec)| {
                format!(
                    "{filename}: services.{name}: skipped: its profiles ({}) are not enabled; \
                     enable one with `--profile`",
                    spec.profiles.join(", ")
                )
            })
            .collect();
        file.services.retain(|_, spec| spec.in_profiles(profiles));
        file.warnings.extend(skipped);
        let now = now_unix_ms();
        let connected = self.connected();
        let mut txn = self.begin("apply").await;
        let (next, ops, _) = txn.parts();
        let nodes = node_views(next, &connected);
        let candidates = candidates(&nodes);
        check_host_access(filename, content, &file, env, &candidates)?;
        let units: std::collections::BTreeSet<String> = file
            .services
            .iter()
            .filter(|(_, spec)| spec.is_unit())
            .map(|(name, _)| name.clone())
            .collect();
        let depends_on: Vec<(String, Vec<String>)> = file
            .services
            .iter()
            .map(|(name, spec)| {
                let deps = spec.depends_on.iter().map(|d| d.service.clone()).collect();
                (name.clone(), deps)
            })
            .collect();
        let staged_configs = file.services.values().any(|s| !s.configs.is_empty());
        // The secrets the services use get their versions (made here when
        // the spec's files or variables bring new values) before anything
        // is compared: a new version is a changed spec.
        let secrets = self.resolve_secrets(next, ops, env, filename, &mut file, who)?;
        let services: Vec<(String, ServiceSpec)> = file.services.into_iter().collect();
        let (changes, superseded) =
            stage_all(next, &candidates, env, services, who, filename, now, ops)?;
        if staged_configs {
            check_config_bytes(txn.desired())?;
        }
        file.warnings
            .extend(super::split::split_warning(filename, &changes, &units));
        file.warnings.extend(super::split::depends_on_warning(
            filename,
            &changes,
            &depends_on,
        ));
        let response = ApplyOutcome {
            services: changes,
            warnings: file.warnings,
            dry_run,
            secrets,
        };
        if dry_run {
            if let Some(hooks) = hooks {
                *hooks = self.hook_runs(txn.desired(), env, &response.services)?;
            }
            // Dropped uncommitted: nothing is stored, sent or emitted.
            return Ok(response);
        }
        let response = Arc::new(response);
        self.start_rollouts(&mut txn, env, &response, superseded, who, now)
            .await;
        txn.commit().await?;
        // The events' copy is gone with the commit.
        Ok(Arc::try_unwrap(response).unwrap_or_else(|shared| (*shared).clone()))
    }
}

/// The most config bytes one node's plan may carry: each instance carries
/// its configs, and the agent decodes plans of up to 256 MiB, so half of
/// that leaves room for everything else in the plan.
pub(super) const MAX_PLAN_CONFIG_BYTES: usize = 128 << 20;

/// Refuses desired state in which some node's plan would carry more than
/// [`MAX_PLAN_CONFIG_BYTES`] of configs (instances × their configs' sizes):
/// the agent could not take that plan, and would get no plan at all.
fn check_config_bytes(desired: &Desired) -> Result<(), StateError> {
    let mut per_node: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for rec in desired.services.values().filter(|r| !r.deleted) {
        let bytes: usize = rec.spec.configs.iter().map(|c| c.content.len()).sum();
        if bytes == 0 {
            continue;
        }
        for node in rec.assignments.values().flatten() {
            let entry = per_node.entry(node.as_str()).or_default();
            entry.0 = entry.0.saturating_add(bytes);
            entry.1 += 1;
        }
    }
    match per_node
        .into_iter()
        .find(|(_, (bytes, _))| *bytes > MAX_PLAN_CONFIG_BYTES)
    {
        None => Ok(()),
        Some((node, (bytes, instances))) => Err(StateError::Invalid(format!(
            "node `{node}` would carry {} of configs in its plan ({instances} instances, each \
             with its configs), over the {} a plan may carry: run fewer instances with large \
             configs per node (`deploy.placement.max_replicas_per_node`), or make the configs \
             smaller",
            convoy_api::limits::human_bytes(bytes),
            convoy_api::limits::human_bytes(MAX_PLAN_CONFIG_BYTES)
        ))),
    }
}

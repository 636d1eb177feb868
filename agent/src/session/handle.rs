//! What the agent does with one coordinator message: Welcome, plans
//! (checked, stored, cached secrets), commands, pings and probe runs.

use super::*;

impl<R: Runtime> Session<R> {
    /// Handles one coordinator message; returns the reply, if any.
    pub(super) async fn handle(
        &mut self,
        addr: &str,
        message: CoordinatorMessage,
        heartbeat: &mut tokio::time::Interval,
    ) -> Option<agent_message::Msg> {
        match message.msg {
            Some(coordinator_message::Msg::Welcome(Welcome {
                node_name,
                heartbeat_interval_ms,
            })) => {
                info!("the coordinator at {addr} welcomes node `{node_name}`");
                if node_name != self.node {
                    warn!(
                        "the coordinator calls this node `{node_name}`, its certificate says `{}`",
                        self.node
                    );
                }
                let every = if heartbeat_interval_ms == 0 {
                    DEFAULT_HEARTBEAT
                } else {
                    Duration::from_millis(heartbeat_interval_ms).max(MIN_HEARTBEAT)
                };
                *heartbeat = heartbeat_timer(every);
                None
            }
            Some(coordinator_message::Msg::Plan(plan)) => Some(self.accept_plan(plan).await),
            Some(coordinator_message::Msg::EncodedPlan(bytes)) => {
                match <NodePlan as prost::Message>::decode(bytes) {
                    Ok(plan) => Some(self.accept_plan(plan).await),
                    Err(e) => {
                        warn!("cannot decode a plan from the coordinator: {e}");
                        None
                    }
                }
            }
            Some(coordinator_message::Msg::Ping(Ping { nonce })) => {
                Some(agent_message::Msg::Pong(Pong { nonce }))
            }
            Some(coordinator_message::Msg::Command(Command { id, kind })) => {
                let answered =
                    |done: Result<Vec<VolumeInfo>, crate::runtime::RuntimeError>| match done {
                        Ok(volumes) => (true, String::new(), volumes),
                        Err(e) => (false, e.to_string(), Vec::new()),
                    };
                let (ok, error, volumes) = match kind {
                    // Facts go out with the next Hello; nothing is cached to refresh.
                    Some(command::Kind::RefreshFacts(_)) => (true, String::new(), Vec::new()),
                    // Answered beside the loop (`run_probes`, tunnels); not reached.
                    Some(
                        command::Kind::RunProbes(_)
                        | command::Kind::OpenLogs(_)
                        | command::Kind::OpenExec(_)
                        | command::Kind::RunOnce(_),
                    ) => (
                        false,
                        "RunProbes is answered elsewhere".to_string(),
                        Vec::new(),
                    ),
                    Some(command::Kind::ListVolumes(list)) => {
                        answered(self.runtime.list_volumes(&list.env).await)
                    }
                    Some(command::Kind::RemoveVolumes(remove)) => {
                        answered(self.runtime.remove_volumes(&remove.env, &remove.keys).await)
                    }
                    None => (
                        false,
                        "this agent does not know that command".to_string(),
                        Vec::new(),
                    ),
                };
                Some(agent_message::Msg::Ack(Ack {
                    target: Some(ack::Target::CommandId(id)),
                    ok,
                    error,
                    probe_results: Vec::new(),
                    volumes,
                }))
            }
            // Answered in the session loop, which holds the renewal state.
            Some(coordinator_message::Msg::Certificate(_)) => None,
            None => {
                debug!("ignoring a message of a kind this agent does not know");
                None
            }
        }
    }

    /// Checks the plan, stores it, hands it to the reconcilers and says how
    /// that went. An invalid plan is refused (the plan in force stays); a
    /// valid one is enforced even when it could not be stored.
    async fn accept_plan(&mut self, plan: NodePlan) -> agent_message::Msg {
        let generation = plan.generation;
        let ack = |ok: bool, error: String| {
            agent_message::Msg::Ack(Ack {
                target: Some(ack::Target::PlanGeneration(generation)),
                ok,
                error,
                probe_results: Vec::new(),
                volumes: Vec::new(),
            })
        };
        let plan = match Plan::try_from(plan) {
            Ok(plan) => plan,
            Err(e) => {
                let error = format!(
                    "plan {generation} refused on node `{}`: {e}; the plan in force stays",
                    self.node
                );
                warn!("{error}");
                return ack(false, error);
            }
        };
        let unchanged = self.plan.borrow().as_deref() == Some(&plan);
        let stored = if unchanged {
            Ok(())
        } else {
            state::store(&self.data_dir, &plan.to_stored()).await
        };
        if !unchanged {
            info!(
                generation,
                workloads = plan.workloads().len(),
                secrets = plan.secret_values().len(),
                "new plan from the coordinator"
            );
            self.cache_secrets(&plan).await;
            self.plan.send_replace(Some(Arc::new(plan)));
        }
        match stored {
            Ok(()) => ack(true, String::new()),
            Err(e) => {
                warn!("{e}; enforcing the plan from memory");
                ack(false, e.to_string())
            }
        }
    }

    /// Keeps the plan's secret values in the node's cache (tmpfs), so that
    /// a restarted agent finds them without its coordinator; values the
    /// plan no longer holds are deleted. A failure is logged (never a value).
    async fn cache_secrets(&self, plan: &Plan) {
        let secrets = self.secrets.clone();
        let values = plan.secret_values().clone();
        if values.is_empty() && secrets.problem().is_some() {
            return;
        }
        let stored = tokio::task::spawn_blocking(move || secrets.store_cache(&values))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        if let Err(e) = stored {
            if !plan.secret_values().is_empty() {
                warn!("cannot cache the plan's secret values: {e}");
            }
        }
    }

    /// Runs the probes RunProbes asks for, and sends the Ack with their
    /// results.
    pub(super) fn run_probes(
        &self,
        id: String,
        run: RunProbes,
        tx: mpsc::Sender<AgentMessage>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let RunProbes { workload_ids } = run;
        let runtime = self.runtime.clone();
        let plan = self.plan.borrow().clone();
        let statuses = self.snapshot.borrow().statuses.clone();
        async move {
            let probe_results =
                probe::run_now(runtime.as_ref(), plan.as_deref(), &statuses, &workload_ids).await;
            debug!(command = %id, results = probe_results.len(), "probes run");
            let ack = Ack {
                target: Some(ack::Target::CommandId(id)),
                ok: true,
                error: String::new(),
                probe_results,
                volumes: Vec::new(),
            };
            // A closed stream: the session is over and so is the question.
            let _ = tx
                .send(AgentMessage {
                    msg: Some(agent_message::Msg::Ack(ack)),
                })
                .await;
        }
    }
}

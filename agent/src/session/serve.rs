//! The running session: one stream with one coordinator, from dial and
//! Hello to its end, with the loop that answers the coordinator and sends
//! status changes, events, renewals and heartbeats.

use super::*;

impl<R: Runtime> Session<R> {
    /// One session with one coordinator, from dial to end.
    pub(super) async fn serve(
        &mut self,
        addr: &str,
        shutdown: &CancellationToken,
        connected_at: &mut Option<Instant>,
        sampler: &mut facts::HostSampler,
    ) -> Result<End, SessionError> {
        let pki = Pki::load(&self.pki_dir).await?;
        if pki.node_name != self.node {
            warn!(
                "agent.pem now names node `{}`, this agent runs as `{}`; restart it to switch",
                pki.node_name, self.node
            );
        }
        let channel = tokio::select! {
            _ = shutdown.cancelled() => return Ok(End::Shutdown),
            channel = connect(addr, &pki) => channel?,
        };
        // Tunnels (logs, exec, run) dial connections of their own.
        let dialer = crate::tunnel::Dialer {
            addr: addr.to_string(),
            pki_dir: self.pki_dir.clone(),
        };
        let mut client = AgentServiceClient::new(channel).max_decoding_message_size(MAX_PLAN_BYTES);

        let (tx, rx) = mpsc::channel::<AgentMessage>(OUTBOUND_BUFFER);
        let mut events = self.events.subscribe();
        let mut facts =
            facts::collect(self.runtime.as_ref(), &self.labels, &self.allowed_binds).await;
        facts.allowed_host_access = self.allowed_host_access.clone();
        facts.gpus = sampler.gpu_devices().await;
        let hello_swarm = facts.swarm.clone();
        let last_applied_generation = self
            .plan
            .borrow()
            .as_ref()
            .map_or(0, |plan| plan.generation());
        let mut sent = self.snapshot.borrow_and_update().statuses.clone();
        let hello = Hello {
            facts: Some(facts),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            last_applied_generation,
            capabilities: vec![convoy_proto::CAPABILITY_ENCODED_PLAN.to_string()],
        };
        let full = StatusReport {
            full_snapshot: true,
            workloads: sent.values().cloned().collect(),
            removed: Vec::new(),
        };
        // The buffer is empty: these cannot block.
        for msg in [
            agent_message::Msg::Hello(hello),
            agent_message::Msg::Status(full),
        ] {
            tx.send(AgentMessage { msg: Some(msg) })
                .await
                .map_err(|_| stream_error(addr, "outbound stream closed"))?;
        }

        let opened = tokio::select! {
            _ = shutdown.cancelled() => return Ok(End::Shutdown),
            opened = tokio::time::timeout(OPEN_TIMEOUT, client.session(ReceiverStream::new(rx))) => opened,
        };
        let mut inbound = match opened {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => return Err(refused_or(classify(addr, &status))),
            Err(_) => {
                return Err(SessionError::Unreachable {
                    addr: addr.to_string(),
                    reason: format!("no answer to Session within {}s", OPEN_TIMEOUT.as_secs()),
                })
            }
        };
        *connected_at = Some(Instant::now());
        info!("session open with the coordinator at {addr}");

        let mut heartbeat = heartbeat_timer(DEFAULT_HEARTBEAT);
        let mut last_beat = Instant::now();
        let mut renewal = Renewal::new(self.pki_dir.clone(), self.node.clone(), &pki.cert_pem);
        let mut renew_check = heartbeat_timer(RENEW_CHECK);
        // Figures go out only when they changed; the first of each
        // session always does (the coordinator forgot the node's).
        let mut proxy_tick = heartbeat_timer(
            self.proxy_stats
                .as_ref()
                .map_or(Duration::from_secs(3600), |s| s.1),
        );
        let mut proxy_sent: Option<convoy_proto::ProxyStats> = None;
        let every = self.swarm_check;
        let mut swarm_check = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        swarm_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // RunProbes answers take up to a probe timeout: they run beside the
        // loop, which keeps answering pings. Dropped (aborted) with the
        // session.
        let mut probe_runs = JoinSet::new();
        // Tunnels the coordinator asked for; they end with the session.
        let mut tunnels = JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(End::Shutdown),
                Some(_) = probe_runs.join_next(), if !probe_runs.is_empty() => {}
                Some(_) = tunnels.join_next(), if !tunnels.is_empty() => {}
                message = inbound.message() => match message {
                    Ok(Some(CoordinatorMessage {
                        msg: Some(coordinator_message::Msg::Certificate(answer)),
                    })) => renewal.answer(answer),
                    Ok(Some(CoordinatorMessage {
                        msg: Some(coordinator_message::Msg::Command(Command {
                            id,
                            kind: Some(command::Kind::RunProbes(run)),
                        })),
                    })) => {
                        probe_runs.spawn(
                            self.run_probes(id, run, tx.clone())
                                .instrument(info_span!("run_probes")),
                        );
                    }
                    Ok(Some(CoordinatorMessage {
                        msg: Some(coordinator_message::Msg::Command(Command {
                            id,
                            kind: Some(command::Kind::OpenLogs(open)),
                        })),
                    })) => {
                        let statuses = self.snapshot.borrow().statuses.clone();
                        let resolved = crate::tunnel::resolve(open, &statuses, &self.node);
                        let (ok, error) = match resolved {
                            Ok(request) => {
                                tunnels.spawn(
                                    crate::tunnel::serve_logs(
                                        dialer.clone(),
                                        self.node.clone(),
                                        self.runtime.clone(),
                                        request,
                                    )
                                    .instrument(info_span!("logs_tunnel")),
                                );
                                (true, String::new())
                            }
                            Err(error) => (false, error),
                        };
                        let ack = Ack {
                            target: Some(ack::Target::CommandId(id)),
                            ok,
                            error,
                            probe_results: Vec::new(),
                            volumes: Vec::new(),
                        };
                        send(&tx, addr, agent_message::Msg::Ack(ack)).await?;
                        postpone(&mut heartbeat, last_beat);
                    }
                    Ok(Some(CoordinatorMessage {
                        msg: Some(coordinator_message::Msg::Command(Command {
                            id,
                            kind: Some(kind @ (command::Kind::OpenExec(_) | command::Kind::RunOnce(_))),
                        })),
                    })) => {
                        let resolved = match kind {
                            command::Kind::OpenExec(open) => {
                                let statuses = self.snapshot.borrow().statuses.clone();
                                crate::exec::resolve_exec(open, &statuses, &self.node).map(|request| {
                                    crate::exec::serve_exec(dialer.clone(), self.runtime.clone(), request)
                                        .instrument(info_span!("exec_tunnel"))
                                        .boxed()
                                })
                            }
                            command::Kind::RunOnce(open) => {
                                let plan = self.plan.borrow().clone();
                                crate::exec::resolve_run(open, plan.as_deref(), &self.node).map(|request| {
                                    crate::exec::serve_run(
                                        dialer.clone(),
                                        self.node.clone(),
                                        self.runtime.clone(),
                                        self.secrets.clone(),
                                        request,
                                    )
                                    .instrument(info_span!("run_tunnel"))
                                    .boxed()
                                })
                            }
                            _ => Err("not a tunnel command".to_string()),
                        };
                        let (ok, error) = match resolved {
                            Ok(task) => {
                                tunnels.spawn(task);
                                (true, String::new())
                            }
                            Err(error) => (false, error),
                        };
                        let ack = Ack {
                            target: Some(ack::Target::CommandId(id)),
                            ok,
                            error,
                            probe_results: Vec::new(),
                            volumes: Vec::new(),
                        };
                        send(&tx, addr, agent_message::Msg::Ack(ack)).await?;
                        postpone(&mut heartbeat, last_beat);
                    }
                    Ok(Some(message)) => {
                        if let Some(reply) = self.handle(addr, message, &mut heartbeat).await {
                            send(&tx, addr, reply).await?;
                            postpone(&mut heartbeat, last_beat);
                        }
                    }
                    Ok(None) => return Ok(End::Closed),
                    Err(status) => return Err(classify(addr, &status)),
                },
                _ = renew_check.tick() => {
                    if let Some(csr_pem) = renewal.request_if_due(SystemTime::now()) {
                        send(&tx, addr, agent_message::Msg::Renew(RenewRequest { csr_pem })).await?;
                        postpone(&mut heartbeat, last_beat);
                    }
                }
                _ = swarm_check.tick() => {
                    // An engine that does not answer changes nothing.
                    if let Some(now) = facts::swarm(self.runtime.as_ref()).await {
                        if now != hello_swarm {
                            info!("the engine's Swarm state changed; saying Hello again with the new facts");
                            return Ok(End::SwarmChanged);
                        }
                    }
                }
                _ = proxy_tick.tick(), if self.proxy_stats.is_some() => {
                    if let Some((stats, _)) = &self.proxy_stats {
                        let now = stats.report();
                        if proxy_sent.as_ref() != Some(&now) && !(proxy_sent.is_none() && now.entries.is_empty()) {
                            send(&tx, addr, agent_message::Msg::ProxyStats(now.clone())).await?;
                            postpone(&mut heartbeat, last_beat);
                            proxy_sent = Some(now);
                        }
                    }
                }
                _ = heartbeat.tick() => {
                    let containers = self.snapshot.borrow().containers;
                    let beat = Heartbeat {
                        sent_unix_ms: unix_ms(SystemTime::now()),
                        metrics: Some(sampler.sample(containers).await),
                    };
                    send(&tx, addr, agent_message::Msg::Heartbeat(beat)).await?;
                    last_beat = Instant::now();
                }
                changed = self.snapshot.changed() => {
                    if changed.is_err() {
                        // The reconciler is gone: only at shutdown.
                        shutdown.cancelled().await;
                        return Ok(End::Shutdown);
                    }
                    let current = self.snapshot.borrow_and_update().statuses.clone();
                    if let Some(report) = diff(&sent, &current) {
                        send(&tx, addr, agent_message::Msg::Status(report)).await?;
                        postpone(&mut heartbeat, last_beat);
                    }
                    sent = current;
                }
                event = events.recv() => match event {
                    Ok(event) => {
                        send(&tx, addr, agent_message::Msg::Event(event)).await?;
                        postpone(&mut heartbeat, last_beat);
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        warn!("dropped {n} events: the coordinator reads too slowly");
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        shutdown.cancelled().await;
                        return Ok(End::Shutdown);
                    }
                },
            }
        }
    }
}

pub(super) async fn send(
    tx: &mpsc::Sender<AgentMessage>,
    addr: &str,
    msg: agent_message::Msg,
) -> Result<(), SessionError> {
    tx.send(AgentMessage { msg: Some(msg) })
        .await
        .map_err(|_| stream_error(addr, "the outbound stream closed"))
}

/// A message other than a heartbeat went out: the next heartbeat waits a
/// whole interval from now, unless the last one (with host metrics) is
/// [`METRICS_MAX_AGE`] old.
pub(super) fn postpone(heartbeat: &mut tokio::time::Interval, last_beat: Instant) {
    if last_beat.elapsed() < METRICS_MAX_AGE {
        heartbeat.reset();
    }
}

pub(super) fn heartbeat_timer(every: Duration) -> tokio::time::Interval {
    let mut timer = tokio::time::interval(every);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer
}

/// The report that turns `sent` into `current`; `None` when they agree.
pub(super) fn diff(
    sent: &BTreeMap<String, WorkloadStatus>,
    current: &BTreeMap<String, WorkloadStatus>,
) -> Option<StatusReport> {
    let workloads: Vec<WorkloadStatus> = current
        .iter()
        .filter(|(id, status)| sent.get(*id) != Some(*status))
        .map(|(_, status)| status.clone())
        .collect();
    let removed: Vec<String> = sent
        .keys()
        .filter(|id| !current.contains_key(*id))
        .cloned()
        .collect();
    if workloads.is_empty() && removed.is_empty() {
        None
    } else {
        Some(StatusReport {
            full_snapshot: false,
            workloads,
            removed,
        })
    }
}

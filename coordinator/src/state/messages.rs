//! What agents say on their stream: heartbeats, acks, status reports and
//! events, turned into live state and cluster events.

use super::*;

impl Coordinator {
    /// [`Self::handle`] of a wire message, for tests.
    #[cfg(test)]
    pub(crate) fn handle_pb(&self, node: &str, conn_id: u64, msg: pb::AgentMessage) {
        let report = AgentReport::try_from(msg).expect("a valid agent message");
        self.handle(node, conn_id, report);
    }

    /// Takes one message from an agent's stream.
    pub fn handle(&self, node: &str, conn_id: u64, report: AgentReport) {
        // Events are built under the lock and sent after it.
        let mut out = Vec::new();
        let mut guard = self.live();
        let Live {
            nodes, plans, lost, ..
        } = &mut *guard;
        let Some(n) = nodes.get_mut(node) else {
            return;
        };
        if n.session.as_ref().is_none_or(|s| s.conn_id != conn_id) {
            return; // a replaced session's late message
        }
        // Any message shows the agent alive: agents send a heartbeat only
        // after an interval in which they sent nothing else.
        if n.silent {
            n.silent = false;
            lost.remove(node);
            tracing::info!(node, "node ready again: heartbeats resumed");
            out.push(
                Ev::new(EventKind::NodeReady)
                    .node(node)
                    .msg(format!("node {node} ready again: heartbeats resumed"))
                    .field("reason", "heartbeat"),
            );
        }
        n.last_heartbeat_unix_ms = now_unix_ms();
        match report {
            AgentReport::Heartbeat(metrics) => {
                if let Some(m) = &metrics {
                    let due = n
                        .last_sample_unix_ms()
                        .is_none_or(|at| n.last_heartbeat_unix_ms - at >= HISTORY_STEP_MS - 50);
                    if due {
                        let sample = Sample {
                            unix_ms: n.last_heartbeat_unix_ms,
                            cpu_percent: m.cpu_percent as f32,
                            memory_used_kib: u32::try_from(m.memory_used_bytes / 1024)
                                .unwrap_or(u32::MAX),
                        };
                        let gpus = m
                            .gpus
                            .iter()
                            .map(|g| live::GpuPoint {
                                index: g.index,
                                utilization_percent: g.utilization_percent as f32,
                                memory_used_mib: u32::try_from(g.memory_used_bytes >> 20)
                                    .unwrap_or(u32::MAX),
                            })
                            .collect();
                        n.record(sample, gpus);
                    }
                }
                n.metrics = metrics;
            }
            AgentReport::PlanAck { generation, result } => match result {
                Ok(()) => n.acked_generation = generation,
                Err(error) => {
                    tracing::warn!(node, generation, %error, "agent rejected a plan");
                }
            },
            AgentReport::CommandAck(ack) => {
                tracing::debug!(node, command = %ack.id, ok = ack.result.is_ok(), "command acknowledged");
                let waiter = self
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&(node.to_string(), ack.id.clone()));
                if let Some(w) = waiter {
                    let _ = w.send(ack);
                }
            }
            AgentReport::Status {
                full_snapshot,
                workloads,
                removed,
            } => {
                let mut previous = if full_snapshot {
                    std::mem::take(&mut n.workloads)
                } else {
                    HashMap::new()
                };
                for id in removed {
                    if n.workloads.remove(&id).is_some() {
                        Self::emit_removed(&mut out, node, &id);
                    }
                }
                // Events only for the node's own instances: what it reports
                // of others is stored but never shown (see `status`).
                let plan = plans.get(node).and_then(|p| p.borrow().clone());
                let planned = |id: &str| {
                    plan.as_ref()
                        .is_some_and(|p| p.workloads.iter().any(|w| w.id == id))
                };
                for w in workloads {
                    let prev = previous.remove(&w.id).or_else(|| n.workloads.remove(&w.id));
                    if prev.is_some() || planned(&w.id) {
                        Self::emit_changes(&mut out, node, prev.as_ref(), &w);
                    }
                    n.workloads.insert(w.id.clone(), w);
                }
                for id in previous.keys() {
                    Self::emit_removed(&mut out, node, id);
                }
                self.status_changed.notify_one();
            }
            AgentReport::Event {
                workload_id,
                kind,
                message,
            } => {
                tracing::info!(node, workload = %workload_id, kind = %kind, "{message}");
                // Health transitions come with the status report (with the
                // probe's output); the rest are forwarded as they are.
                if !matches!(kind.as_str(), "healthy" | "unhealthy") {
                    out.push(
                        Ev::new(format!("instance.{kind}"))
                            .instance(&workload_id)
                            .node(node)
                            .msg(format!("{workload_id}: {message}")),
                    );
                }
            }
            AgentReport::Pong => {
                // Timed by the session itself.
            }
            AgentReport::Renew => {
                // Answered by the session itself (it needs the CA).
            }
            AgentReport::Hello => {
                tracing::warn!(node, "ignoring a second Hello on one stream");
            }
            AgentReport::ProxyStats(report) => {
                // Its own lock, taken after the live state's (never before).
                self.proxy_figures.record(node, report);
            }
        }
        drop(guard);
        for ev in out {
            self.events.emit(ev);
        }
    }

    pub(super) fn emit_removed(out: &mut Vec<Ev>, node: &str, id: &str) {
        out.push(
            Ev::new(EventKind::InstanceState)
                .instance(id)
                .node(node)
                .msg(format!("{id} on {node}: removed"))
                .field("state", "removed"),
        );
    }

    /// Instance state and health transitions, from one status report.
    pub(super) fn emit_changes(
        out: &mut Vec<Ev>,
        node: &str,
        prev: Option<&WorkloadReport>,
        w: &WorkloadReport,
    ) {
        let state = w.state.as_str();
        if prev.is_none_or(|p| p.state != w.state || p.spec_hash != w.spec_hash) {
            let previous = prev.map(|p| p.state.as_str());
            let mut ev = Ev::new(EventKind::InstanceState)
                .instance(&w.id)
                .node(node)
                .msg(if w.reason.is_empty() {
                    format!("{} on {node}: {state} (revision {})", w.id, w.revision)
                } else {
                    format!(
                        "{} on {node}: {state} (revision {}): {}",
                        w.id, w.revision, w.reason
                    )
                })
                .field("state", state)
                .field("revision", w.revision);
            if let Some(p) = previous {
                ev = ev.field("previous", p);
            }
            if !w.reason.is_empty() {
                ev = ev.field("reason", &w.reason);
            }
            out.push(ev);
        }
        let health = w.health.as_str();
        let prev_health = prev.map(|p| p.health).unwrap_or_default();
        if prev_health != w.health {
            let mut ev = Ev::new(EventKind::InstanceHealth)
                .instance(&w.id)
                .node(node)
                .field("health", health)
                .field("previous", prev_health.as_str());
            let message = if w.health == Health::Unhealthy {
                ev = ev
                    .field("probe", &w.failing_probe)
                    .field("output", &w.health_output);
                format!(
                    "{} on {node}: unhealthy ({}: {})",
                    w.id,
                    w.failing_probe,
                    w.health_output.trim()
                )
            } else {
                format!("{} on {node}: {health}", w.id)
            };
            out.push(ev.msg(message));
        }
    }
}

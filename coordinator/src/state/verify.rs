//! Commands to agents (sent on their stream, answered by an Ack) and
//! `verify`, which runs every health check now through them.

use super::*;

impl Coordinator {
    /// Sends a command to a node's agent and waits for its Ack.
    pub(super) async fn command(
        &self,
        node: &str,
        kind: pb::command::Kind,
        timeout: Duration,
    ) -> Result<CommandAck, String> {
        let id = format!("c{}", self.next_command.fetch_add(1, Ordering::Relaxed));
        let sender = {
            let live = self.live();
            match live.nodes.get(node) {
                Some(n) if n.ready() => n.session.as_ref().map(|s| s.commands.clone()),
                _ => None,
            }
        };
        let Some(sender) = sender else {
            return Err(format!("node `{node}` is not connected"));
        };
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((node.to_string(), id.clone()), tx);
        let msg = pb::CoordinatorMessage {
            msg: Some(pb::coordinator_message::Msg::Command(pb::Command {
                id: id.clone(),
                kind: Some(kind),
            })),
        };
        let result = match sender.try_send(Box::new(msg)) {
            Err(_) => Err(format!("node `{node}` has too many commands queued")),
            Ok(()) => match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(ack)) => Ok(ack),
                Ok(Err(_)) => Err(format!("node `{node}` disconnected before answering")),
                Err(_) => Err(format!(
                    "node `{node}` did not answer within {} ms",
                    timeout.as_millis()
                )),
            },
        };
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(node.to_string(), id));
        result
    }

    /// Runs every health check of the matching instances now, on their
    /// agents, and reports each check's outcome.
    pub async fn verify(
        &self,
        service: &str,
        env: &str,
        timeout: Duration,
    ) -> Result<VerifyReport, StateError> {
        let status = self.status(service, env).await;
        if !service.is_empty() && status.services.is_empty() {
            return Err(StateError::ServiceNotFound {
                service: service.to_string(),
                env: if env.is_empty() { DEFAULT_ENV } else { env }.to_string(),
            });
        }
        let mut results = Vec::new();
        let mut by_node: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for s in &status.services {
            for i in &s.instances {
                let fail = |output: String| VerifyResult {
                    service: s.name.clone(),
                    instance: i.id.clone(),
                    node: i.node.clone(),
                    healthy: false,
                    output,
                    ..Default::default()
                };
                if i.node.is_empty() {
                    results.push(fail(format!("not placed: {}", i.reason)));
                } else if !i.node_connected {
                    results.push(fail(format!("node `{}` is not connected", i.node)));
                } else {
                    by_node
                        .entry(i.node.clone())
                        .or_default()
                        .push((s.name.clone(), i.id.clone()));
                }
            }
        }
        let asks = by_node.into_iter().map(|(node, instances)| async move {
            let ids = instances.iter().map(|(_, id)| id.clone()).collect();
            let kind = pb::command::Kind::RunProbes(pb::RunProbes { workload_ids: ids });
            let answer = self.command(&node, kind, timeout).await;
            (node, instances, answer)
        });
        for (node, instances, answer) in futures::future::join_all(asks).await {
            for (svc, id) in instances {
                let base = VerifyResult {
                    service: svc.clone(),
                    instance: id.clone(),
                    node: node.clone(),
                    ..Default::default()
                };
                match &answer {
                    Err(e) => results.push(VerifyResult {
                        output: e.clone(),
                        ..base
                    }),
                    Ok(CommandAck {
                        result: Err(error), ..
                    }) => results.push(VerifyResult {
                        output: format!("the agent could not run the checks: {error}"),
                        ..base
                    }),
                    Ok(ack) => {
                        let mine: Vec<_> = ack
                            .probe_results
                            .iter()
                            .filter(|r| r.workload_id == id)
                            .collect();
                        if mine.is_empty() {
                            results.push(VerifyResult {
                                output: "the agent reported no result".into(),
                                ..base.clone()
                            });
                        }
                        for r in mine {
                            results.push(VerifyResult {
                                probe: r.probe.clone(),
                                healthy: r.healthy,
                                output: r.output.clone(),
                                duration_ms: r.duration_ms,
                                ..base.clone()
                            });
                        }
                    }
                }
            }
        }
        results.sort_by(|a, b| {
            (&a.service, &a.instance, &a.probe).cmp(&(&b.service, &b.instance, &b.probe))
        });
        Ok(VerifyReport {
            healthy: results.iter().all(|r| r.healthy),
            results,
        })
    }
}

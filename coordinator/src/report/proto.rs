//! Wire → domain.

use convoy_proto as pb;

use super::*;

impl TryFrom<pb::AgentMessage> for AgentReport {
    type Error = InvalidReport;

    fn try_from(msg: pb::AgentMessage) -> Result<Self, InvalidReport> {
        use pb::agent_message::Msg;
        let pb::AgentMessage { msg } = msg;
        Ok(match msg.ok_or(InvalidReport::Empty)? {
            Msg::Heartbeat(pb::Heartbeat {
                sent_unix_ms: _,
                metrics,
            }) => AgentReport::Heartbeat(metrics.map(HostMetrics::from)),
            Msg::Ack(ack) => ack_report(ack)?,
            Msg::Status(pb::StatusReport {
                full_snapshot,
                workloads,
                removed,
            }) => AgentReport::Status {
                full_snapshot,
                workloads: workloads
                    .into_iter()
                    .map(WorkloadReport::try_from)
                    .collect::<Result<_, _>>()?,
                removed,
            },
            Msg::Event(pb::Event {
                unix_ms: _,
                workload_id,
                kind,
                message,
            }) => {
                if kind.is_empty() {
                    return Err(InvalidReport::EventWithoutKind);
                }
                AgentReport::Event {
                    workload_id,
                    kind,
                    message,
                }
            }
            Msg::Pong(pb::Pong { nonce: _ }) => AgentReport::Pong,
            Msg::Renew(_) => AgentReport::Renew,
            Msg::Hello(_) => AgentReport::Hello,
            Msg::ProxyStats(stats) => AgentReport::ProxyStats(stats.try_into()?),
        })
    }
}

fn ack_report(ack: pb::Ack) -> Result<AgentReport, InvalidReport> {
    let pb::Ack {
        target,
        ok,
        error,
        probe_results,
        volumes,
    } = ack;
    let result = if ok { Ok(()) } else { Err(error) };
    Ok(match target.ok_or(InvalidReport::AckWithoutTarget)? {
        pb::ack::Target::PlanGeneration(generation) => AgentReport::PlanAck { generation, result },
        pb::ack::Target::CommandId(id) => AgentReport::CommandAck(CommandAck {
            id,
            result,
            probe_results: probe_results.into_iter().map(ProbeResult::from).collect(),
            volumes,
        }),
    })
}

impl From<pb::ProbeResult> for ProbeResult {
    fn from(r: pb::ProbeResult) -> Self {
        let pb::ProbeResult {
            workload_id,
            probe,
            healthy,
            output,
            duration_ms,
        } = r;
        Self {
            workload_id,
            probe,
            healthy,
            output,
            duration_ms,
        }
    }
}

impl From<pb::HostMetrics> for HostMetrics {
    fn from(m: pb::HostMetrics) -> Self {
        let pb::HostMetrics {
            load1,
            memory_used_bytes,
            memory_total_bytes,
            containers,
            cpu_percent,
            disk_used_bytes,
            disk_total_bytes,
            load5,
            load15,
            gpus,
        } = m;
        Self {
            cpu_percent,
            memory_used_bytes,
            memory_total_bytes,
            disk_used_bytes,
            disk_total_bytes,
            load1,
            load5,
            load15,
            containers,
            gpus: gpus
                .into_iter()
                .take(crate::state::MAX_GPUS)
                .map(GpuSample::from)
                .collect(),
        }
    }
}

impl From<HostMetrics> for pb::HostMetrics {
    fn from(m: HostMetrics) -> Self {
        let HostMetrics {
            cpu_percent,
            memory_used_bytes,
            memory_total_bytes,
            disk_used_bytes,
            disk_total_bytes,
            load1,
            load5,
            load15,
            containers,
            gpus,
        } = m;
        Self {
            load1,
            memory_used_bytes,
            memory_total_bytes,
            containers,
            cpu_percent,
            disk_used_bytes,
            disk_total_bytes,
            load5,
            load15,
            gpus: gpus.into_iter().map(pb::GpuSample::from).collect(),
        }
    }
}

impl From<pb::GpuSample> for GpuSample {
    fn from(s: pb::GpuSample) -> Self {
        let pb::GpuSample {
            index,
            utilization_percent,
            memory_used_bytes,
            temperature_c,
            power_w,
        } = s;
        // Figures that cannot be: read as 0, like a figure not given.
        let sane = |v: f64| if v.is_finite() && v >= 0.0 { v } else { 0.0 };
        Self {
            index,
            utilization_percent: sane(utilization_percent).min(100.0),
            memory_used_bytes,
            temperature_c: sane(temperature_c),
            power_w: sane(power_w),
        }
    }
}

impl From<GpuSample> for pb::GpuSample {
    fn from(s: GpuSample) -> Self {
        let GpuSample {
            index,
            utilization_percent,
            memory_used_bytes,
            temperature_c,
            power_w,
        } = s;
        Self {
            index,
            utilization_percent,
            memory_used_bytes,
            temperature_c,
            power_w,
        }
    }
}

impl TryFrom<pb::WorkloadStatus> for WorkloadReport {
    type Error = InvalidReport;

    fn try_from(w: pb::WorkloadStatus) -> Result<Self, InvalidReport> {
        let pb::WorkloadStatus {
            id,
            revision,
            spec_hash,
            state,
            reason,
            exit_code,
            restarts,
            container_id,
            container_name,
            updated_unix_ms,
            health,
            health_output,
            failing_probe,
            unit,
            swarm_tasks,
            swarm_update_state,
            swarm_update_message,
        } = w;
        if id.is_empty() {
            return Err(InvalidReport::MissingWorkloadId);
        }
        let unknown = |field, value| InvalidReport::UnknownEnum {
            id: id.clone(),
            field,
            value,
        };
        let state = match pb::WorkloadState::try_from(state).map_err(|_| unknown("state", state))? {
            pb::WorkloadState::Unspecified => InstanceState::Unknown,
            pb::WorkloadState::Pending => InstanceState::Pending,
            pb::WorkloadState::Starting => InstanceState::Starting,
            pb::WorkloadState::Running => InstanceState::Running,
            pb::WorkloadState::Failed => InstanceState::Failed,
            pb::WorkloadState::Exited => InstanceState::Exited,
            pb::WorkloadState::Lost => InstanceState::Lost,
        };
        let health = match pb::Health::try_from(health).map_err(|_| unknown("health", health))? {
            pb::Health::Unspecified => Health::None,
            pb::Health::Starting => Health::Starting,
            pb::Health::Healthy => Health::Healthy,
            pb::Health::Unhealthy => Health::Unhealthy,
        };
        // Of systemd's view the coordinator keeps the journal tail; the
        // rest is in `state` and `reason` already.
        let journal_tail = unit.map(|u| u.journal_tail).unwrap_or_default();
        let cut = crate::swarm::facts::bounded;
        let swarm_tasks = swarm_tasks
            .into_iter()
            .take(MAX_SWARM_TASKS)
            .map(|t| {
                let pb::SwarmTask {
                    task_id,
                    slot,
                    node_id,
                    node_hostname,
                    state,
                    desired_state,
                    error,
                    message,
                    container_id,
                    revision,
                    updated_unix_ms,
                } = t;
                SwarmTaskReport {
                    task_id: cut(task_id),
                    slot,
                    node_id: cut(node_id),
                    node_hostname: cut(node_hostname),
                    state: cut(state),
                    desired_state: cut(desired_state),
                    error: cut(error),
                    message: cut(message),
                    container_id: cut(container_id),
                    revision,
                    updated_unix_ms,
                }
            })
            .collect();
        Ok(Self {
            id,
            revision,
            spec_hash,
            state,
            reason,
            exit_code,
            restarts,
            container_id,
            container_name,
            updated_unix_ms,
            health,
            health_output,
            failing_probe,
            journal_tail,
            swarm_tasks,
            swarm_update_state: cut(swarm_update_state),
            swarm_update_message: cut(swarm_update_message),
        })
    }
}

impl From<pb::Hello> for AgentHello {
    fn from(hello: pb::Hello) -> Self {
        let pb::Hello {
            facts,
            agent_version,
            // The coordinator re-sends the current plan whatever the
            // agent applied last (plans are idempotent by generation).
            last_applied_generation: _,
            capabilities,
        } = hello;
        Self {
            facts: facts.unwrap_or_default().into(),
            agent_version,
            capabilities,
        }
    }
}

impl From<InstanceState> for pb::WorkloadState {
    fn from(s: InstanceState) -> Self {
        match s {
            InstanceState::Unknown => Self::Unspecified,
            InstanceState::Pending => Self::Pending,
            InstanceState::Starting => Self::Starting,
            InstanceState::Running => Self::Running,
            InstanceState::Failed => Self::Failed,
            InstanceState::Exited => Self::Exited,
            InstanceState::Lost => Self::Lost,
        }
    }
}

impl From<Health> for pb::Health {
    fn from(h: Health) -> Self {
        match h {
            Health::None => Self::Unspecified,
            Health::Starting => Self::Starting,
            Health::Healthy => Self::Healthy,
            Health::Unhealthy => Self::Unhealthy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(w: pb::WorkloadStatus) -> pb::AgentMessage {
        pb::AgentMessage {
            msg: Some(pb::agent_message::Msg::Status(pb::StatusReport {
                full_snapshot: false,
                workloads: vec![w],
                removed: vec![],
            })),
        }
    }

    #[test]
    fn each_malformed_agent_message_is_refused_with_its_error() {
        let empty = pb::AgentMessage { msg: None };
        assert_eq!(AgentReport::try_from(empty), Err(InvalidReport::Empty));

        let ack = pb::AgentMessage {
            msg: Some(pb::agent_message::Msg::Ack(pb::Ack {
                target: None,
                ok: true,
                ..Default::default()
            })),
        };
        assert_eq!(
            AgentReport::try_from(ack),
            Err(InvalidReport::AckWithoutTarget)
        );

        let no_id = status(pb::WorkloadStatus::default());
        assert_eq!(
            AgentReport::try_from(no_id),
            Err(InvalidReport::MissingWorkloadId)
        );

        let bad_state = status(pb::WorkloadStatus {
            id: "default/web/1".into(),
            state: 42,
            ..Default::default()
        });
        let err = AgentReport::try_from(bad_state).unwrap_err();
        assert_eq!(
            err,
            InvalidReport::UnknownEnum {
                id: "default/web/1".into(),
                field: "state",
                value: 42
            }
        );
        assert_eq!(
            err.to_string(),
            "workload `default/web/1`: unknown state 42"
        );

        let bad_health = status(pb::WorkloadStatus {
            id: "default/web/1".into(),
            health: -1,
            ..Default::default()
        });
        assert!(matches!(
            AgentReport::try_from(bad_health),
            Err(InvalidReport::UnknownEnum {
                field: "health",
                ..
            })
        ));

        let event = pb::AgentMessage {
            msg: Some(pb::agent_message::Msg::Event(pb::Event::default())),
        };
        assert_eq!(
            AgentReport::try_from(event),
            Err(InvalidReport::EventWithoutKind)
        );
    }

    #[test]
    fn a_status_report_becomes_typed_states_with_the_units_journal() {
        let msg = status(pb::WorkloadStatus {
            id: "default/job/1".into(),
            state: pb::WorkloadState::Failed as i32,
            health: pb::Health::Unhealthy as i32,
            exit_code: 3,
            unit: Some(pb::UnitStatus {
                journal_tail: vec!["boom".into()],
                ..Default::default()
            }),
            ..Default::default()
        });
        let AgentReport::Status { workloads, .. } = AgentReport::try_from(msg).unwrap() else {
            panic!("a status report");
        };
        assert_eq!(workloads[0].state, InstanceState::Failed);
        assert_eq!(workloads[0].health, Health::Unhealthy);
        assert_eq!(workloads[0].exit_code, 3);
        assert_eq!(workloads[0].journal_tail, vec!["boom".to_string()]);
    }

    #[test]
    fn acks_split_into_plan_and_command_answers() {
        let plan = pb::AgentMessage {
            msg: Some(pb::agent_message::Msg::Ack(pb::Ack {
                target: Some(pb::ack::Target::PlanGeneration(7)),
                ok: false,
                error: "bad plan".into(),
                probe_results: vec![],
                volumes: vec![],
            })),
        };
        assert_eq!(
            AgentReport::try_from(plan),
            Ok(AgentReport::PlanAck {
                generation: 7,
                result: Err("bad plan".into())
            })
        );
    }
}

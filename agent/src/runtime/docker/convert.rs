//! Reading the engine's answers: listed containers, inspections, health and
//! events as the runtime's own types.

use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummary,
    ContainerSummaryStateEnum, EventMessage, HealthStatusEnum,
};
use convoy_proto::Health;

use crate::runtime::{
    cut_output, labels, ContainerInfo, ContainerState, DockerHealth, Observed, RuntimeEvent,
};

pub(super) fn observed_from_summary(summary: ContainerSummary) -> Option<Observed> {
    let id = summary.id?;
    let labels_map = summary.labels.unwrap_or_default();
    let name = summary
        .names
        .unwrap_or_default()
        .into_iter()
        .next()
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default();
    let state = match summary.state {
        Some(ContainerSummaryStateEnum::CREATED) => ContainerState::Created,
        Some(ContainerSummaryStateEnum::RUNNING) => ContainerState::Running,
        Some(ContainerSummaryStateEnum::PAUSED) => ContainerState::Paused,
        Some(ContainerSummaryStateEnum::RESTARTING) => ContainerState::Restarting,
        Some(ContainerSummaryStateEnum::REMOVING) => ContainerState::Removing,
        Some(ContainerSummaryStateEnum::DEAD) => ContainerState::Dead,
        Some(ContainerSummaryStateEnum::EXITED) | Some(ContainerSummaryStateEnum::EMPTY) | None => {
            ContainerState::Exited
        }
    };
    let label = |key: &str| labels_map.get(key).cloned().unwrap_or_default();
    Some(Observed {
        name,
        node: label(labels::NODE),
        workload_id: label(labels::WORKLOAD),
        spec_hash: label(labels::SPEC_HASH),
        revision: label(labels::REVISION).parse().unwrap_or(0),
        state,
        created_unix: summary.created.unwrap_or(0),
        exit_code: None,
        oom_killed: false,
        started_at: None,
        finished_at: None,
        error: String::new(),
        health: None,
        id,
    })
}

/// Docker's health of a container; `None` when it has no healthcheck.
pub(super) fn docker_health(health: &bollard::models::Health) -> Option<DockerHealth> {
    let status = match health.status? {
        HealthStatusEnum::STARTING => Health::Starting,
        HealthStatusEnum::HEALTHY => Health::Healthy,
        HealthStatusEnum::UNHEALTHY => Health::Unhealthy,
        HealthStatusEnum::NONE | HealthStatusEnum::EMPTY => return None,
    };
    let output = health
        .log
        .as_ref()
        .and_then(|log| log.last())
        .map(|last| {
            let text = last.output.as_deref().unwrap_or("").trim();
            match last.exit_code {
                Some(0) | None => cut_output(text),
                Some(code) if text.is_empty() => format!("exit code {code}"),
                Some(code) => cut_output(&format!("exit code {code}: {text}")),
            }
        })
        .unwrap_or_default();
    Some(DockerHealth { status, output })
}

/// What probes need from an inspect answer.
pub(super) fn container_info(inspect: ContainerInspectResponse) -> ContainerInfo {
    let state = inspect.state.as_ref();
    let status = state.and_then(|s| s.status);
    let health = state
        .and_then(|s| s.health.as_ref())
        .and_then(docker_health);
    let network = inspect.network_settings.unwrap_or_default();
    let parse_ip = |text: Option<&String>| {
        text.filter(|t| !t.is_empty())
            .and_then(|t| t.parse::<std::net::IpAddr>().ok())
    };
    let ip = parse_ip(network.ip_address.as_ref()).or_else(|| {
        let mut networks: Vec<_> = network.networks.iter().flatten().collect();
        networks.sort_by(|a, b| a.0.cmp(b.0));
        networks
            .into_iter()
            .find_map(|(_, endpoint)| parse_ip(endpoint.ip_address.as_ref()))
    });
    let mut published = Vec::new();
    for (key, bindings) in network.ports.iter().flatten() {
        let Some(port) = key.strip_suffix("/tcp").and_then(|p| p.parse::<u16>().ok()) else {
            continue;
        };
        for binding in bindings.iter().flatten() {
            let host_port = binding.host_port.as_deref().and_then(|p| p.parse().ok());
            let host_ip = binding
                .host_ip
                .as_deref()
                .filter(|ip| !ip.is_empty())
                .unwrap_or("0.0.0.0")
                .parse::<std::net::IpAddr>()
                .ok();
            if let (Some(ip), Some(host_port)) = (host_ip, host_port) {
                published.push((port, std::net::SocketAddr::new(ip, host_port)));
            }
        }
    }
    published.sort();
    ContainerInfo {
        state: status.map(|s| state_from_inspect(s, ContainerState::Exited)),
        health,
        ip,
        published,
    }
}

pub(super) fn state_from_inspect(
    status: ContainerStateStatusEnum,
    listed: ContainerState,
) -> ContainerState {
    match status {
        ContainerStateStatusEnum::CREATED => ContainerState::Created,
        ContainerStateStatusEnum::RUNNING => ContainerState::Running,
        ContainerStateStatusEnum::PAUSED => ContainerState::Paused,
        ContainerStateStatusEnum::RESTARTING => ContainerState::Restarting,
        ContainerStateStatusEnum::REMOVING => ContainerState::Removing,
        ContainerStateStatusEnum::EXITED => ContainerState::Exited,
        ContainerStateStatusEnum::DEAD => ContainerState::Dead,
        ContainerStateStatusEnum::EMPTY => listed,
    }
}

pub(super) fn event_from_message(message: EventMessage) -> Option<RuntimeEvent> {
    let actor = message.actor?;
    let attributes = actor.attributes.unwrap_or_default();
    Some(RuntimeEvent {
        container_id: actor.id.unwrap_or_default(),
        workload_id: attributes
            .get(labels::WORKLOAD)
            .cloned()
            .unwrap_or_default(),
        action: message.action.unwrap_or_default(),
    })
}

//! Docker's errors in Convoy's words: unreachable or not, with the context
//! and a cause short enough for a one-line status reason.

use bollard::errors::Error as BollardError;
use bollard::query_parameters::InspectContainerOptions;
use bollard::Docker;

use super::MAX_CAUSE_LEN;
use crate::error_chain;
use crate::runtime::{labels, RuntimeError};

/// Maps a bollard error: transport failures mean the daemon is unreachable,
/// anything the daemon said is an engine error with `context`.
pub(super) fn classify(context: &str, error: BollardError) -> RuntimeError {
    match error {
        // A GPU request on an engine without the NVIDIA runtime: Docker
        // creates the container and refuses to start it.
        BollardError::DockerResponseServerError { message, .. }
            if message.contains("could not select device driver") =>
        {
            RuntimeError::NoGpuRuntime {
                context: context.to_string(),
                message: short(&message),
            }
        }
        BollardError::DockerResponseServerError { message, .. } => RuntimeError::Engine {
            context: context.to_string(),
            message: short(&message),
        },
        BollardError::DockerStreamError { error } => RuntimeError::Engine {
            context: context.to_string(),
            message: short(&error),
        },
        e @ (BollardError::JsonDataError { .. }
        | BollardError::JsonSerdeError { .. }
        | BollardError::StrParseError { .. }
        | BollardError::StrFmtError { .. }
        | BollardError::APIVersionParseError {}
        | BollardError::URLEncodedError { .. }) => RuntimeError::Engine {
            context: context.to_string(),
            message: short(&e.to_string()),
        },
        other => RuntimeError::Unreachable(short(&error_chain(&other))),
    }
}

/// Explains a 409 on create: whose container holds the name.
pub(super) async fn name_conflict(
    docker: &Docker,
    node: &str,
    name: &str,
    message: String,
) -> RuntimeError {
    let holder = docker
        .inspect_container(name, None::<InspectContainerOptions>)
        .await
        .ok()
        .and_then(|c| c.config)
        .and_then(|c| c.labels)
        .unwrap_or_default();
    let managed = holder.get(labels::MANAGED).map(String::as_str) == Some("true");
    match holder.get(labels::NODE) {
        _ if !managed => RuntimeError::NameTaken {
            name: name.to_string(),
        },
        Some(other) if other != node => RuntimeError::Engine {
            context: format!("creating container `{name}`"),
            message: format!("the name is taken by a container of node `{other}`"),
        },
        _ => RuntimeError::Engine {
            context: format!("creating container `{name}`"),
            message: short(&message),
        },
    }
}

pub(super) fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The first line of a cause, cut to a length that fits a status reason.
pub(super) fn short(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    if line.len() <= MAX_CAUSE_LEN {
        return line.to_string();
    }
    let mut end = MAX_CAUSE_LEN;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 16: a GPU request where Docker has no NVIDIA runtime is named,
    /// with what to install and the node.
    #[test]
    fn a_missing_nvidia_runtime_is_named_with_the_fix() {
        let error = BollardError::DockerResponseServerError {
            status_code: 500,
            message: "could not select device driver \"nvidia\" with capabilities: [[gpu]]".into(),
        };
        let e = classify("starting container `default-train-1`", error);
        assert!(matches!(e, RuntimeError::NoGpuRuntime { .. }), "{e:?}");
        assert_eq!(
            e.reason("gpu-3"),
            "could not select device driver nvidia on node `gpu-3`: install the NVIDIA container \
             toolkit (starting container `default-train-1`: could not select device driver \
             \"nvidia\" with capabilities: [[gpu]])"
        );
        let other = BollardError::DockerResponseServerError {
            status_code: 500,
            message: "no such image".into(),
        };
        assert!(matches!(classify("x", other), RuntimeError::Engine { .. }));
    }
}

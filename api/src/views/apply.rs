//! What `convoy apply`, `delete` and `verify` print (`-o json`): the
//! changes an apply made or would make, a delete's answer, the checks' results.

use convoy_proto as pb;
use pb::ChangeAction;
use serde::Serialize;

use crate::env::DEFAULT_ENV;

#[derive(Debug, Serialize, PartialEq)]
pub struct ApplyJson {
    pub dry_run: bool,
    pub warnings: Vec<String>,
    pub services: Vec<ServiceChangeJson>,
    /// What the apply did to the spec's secrets (never values); left out
    /// when the spec has none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretChangeJson>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct SecretChangeJson {
    pub env: String,
    pub name: String,
    /// created, generated, rotated, unchanged, external.
    pub action: String,
    pub version: u64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ServiceChangeJson {
    pub service: String,
    pub env: String,
    pub action: &'static str,
    pub revision: u64,
    pub previous_revision: u64,
    pub changed_fields: Vec<String>,
    /// Unified diff of the previous and new spec (updates only).
    pub diff: String,
    pub instances: Vec<InstanceChangeJson>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct InstanceChangeJson {
    pub instance_id: String,
    pub node: String,
    pub action: &'static str,
}

impl From<&pb::ApplyResponse> for ApplyJson {
    fn from(response: &pb::ApplyResponse) -> Self {
        let pb::ApplyResponse {
            services,
            warnings,
            dry_run,
            secrets,
        } = response;
        Self {
            dry_run: *dry_run,
            warnings: warnings.clone(),
            services: services.iter().map(ServiceChangeJson::from).collect(),
            secrets: secrets
                .iter()
                .map(|s| SecretChangeJson {
                    env: s.env.clone(),
                    name: s.name.clone(),
                    action: s.action.clone(),
                    version: s.version,
                })
                .collect(),
        }
    }
}

impl From<&pb::ServiceChange> for ServiceChangeJson {
    fn from(change: &pb::ServiceChange) -> Self {
        let pb::ServiceChange {
            service,
            env,
            action,
            revision,
            previous_revision,
            instances,
            changed_fields,
            diff,
        } = change;
        Self {
            service: service.clone(),
            env: env.clone(),
            action: change_action_word(*action),
            revision: *revision,
            previous_revision: *previous_revision,
            changed_fields: changed_fields.clone(),
            diff: diff.clone(),
            instances: instances
                .iter()
                .map(|i| {
                    let pb::InstanceChange {
                        instance_id,
                        node,
                        action,
                    } = i;
                    InstanceChangeJson {
                        instance_id: instance_id.clone(),
                        node: node.clone(),
                        action: change_action_word(*action),
                    }
                })
                .collect(),
        }
    }
}

pub fn change_action(value: i32) -> ChangeAction {
    ChangeAction::try_from(value).unwrap_or(ChangeAction::Unspecified)
}

pub fn change_action_word(value: i32) -> &'static str {
    match change_action(value) {
        ChangeAction::Unspecified => "unspecified",
        ChangeAction::Create => "create",
        ChangeAction::Update => "update",
        ChangeAction::Unchanged => "unchanged",
        ChangeAction::Remove => "remove",
        ChangeAction::Replace => "replace",
        ChangeAction::Pending => "pending",
    }
}

#[derive(Debug, Serialize, PartialEq)]
pub struct DeleteJson {
    pub service: String,
    pub env: String,
    pub removed_instances: u32,
    pub last_revision: u64,
}

impl DeleteJson {
    /// The answer does not repeat the service, so the request supplies it.
    pub fn new(service: &str, env: &str, response: &pb::DeleteResponse) -> Self {
        let pb::DeleteResponse {
            removed_instances,
            last_revision,
        } = response;
        Self {
            service: service.to_owned(),
            env: if env.is_empty() { DEFAULT_ENV } else { env }.to_owned(),
            removed_instances: *removed_instances,
            last_revision: *last_revision,
        }
    }
}

/// `convoy verify -o json`.
#[derive(Debug, Serialize, PartialEq)]
pub struct VerifyJson {
    pub healthy: bool,
    pub results: Vec<VerifyResultJson>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct VerifyResultJson {
    pub service: String,
    pub instance: String,
    pub node: String,
    pub probe: String,
    pub healthy: bool,
    pub output: String,
    pub duration_ms: u64,
}

impl From<&pb::VerifyResponse> for VerifyJson {
    fn from(r: &pb::VerifyResponse) -> Self {
        Self {
            healthy: r.healthy,
            results: r
                .results
                .iter()
                .map(|v| VerifyResultJson {
                    service: v.service.clone(),
                    instance: v.instance.clone(),
                    node: v.node.clone(),
                    probe: v.probe.clone(),
                    healthy: v.healthy,
                    output: v.output.clone(),
                    duration_ms: v.duration_ms,
                })
                .collect(),
        }
    }
}

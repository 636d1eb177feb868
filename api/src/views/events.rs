//! `convoy events -o json`: one cluster event a line.

use std::collections::BTreeMap;

use convoy_proto as pb;
use serde::Serialize;

use crate::clock::rfc3339_ms;

/// One cluster event (`convoy events -o json`, one object per line).
#[derive(Debug, Serialize, PartialEq)]
pub struct EventJson {
    pub seq: u64,
    pub unix_ms: i64,
    /// RFC 3339, UTC.
    pub time: String,
    pub kind: String,
    pub env: String,
    pub service: String,
    pub instance: String,
    pub node: String,
    pub message: String,
    pub fields: BTreeMap<String, String>,
}

impl From<&pb::ClusterEvent> for EventJson {
    fn from(ev: &pb::ClusterEvent) -> Self {
        let pb::ClusterEvent {
            seq,
            unix_ms,
            kind,
            env,
            service,
            instance,
            node,
            message,
            fields,
        } = ev;
        Self {
            seq: *seq,
            unix_ms: *unix_ms,
            time: rfc3339_ms(*unix_ms),
            kind: kind.clone(),
            env: env.clone(),
            service: service.clone(),
            instance: instance.clone(),
            node: node.clone(),
            message: message.clone(),
            fields: fields.clone().into_iter().collect(),
        }
    }
}

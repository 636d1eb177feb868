//! The JSON documents of INTERFACES.md: what `convoy ... -o json` prints and
//! what the dashboard's `/api/` serves. One definition, shared by the CLI and
//! the coordinator, so a change to one is a change to the documented shape.

// ---- JSON shapes (INTERFACES.md) ----

mod apply;
mod events;
mod nodes;
mod secrets;
mod status;

pub use apply::{
    change_action, change_action_word, ApplyJson, DeleteJson, InstanceChangeJson, SecretChangeJson,
    ServiceChangeJson, VerifyJson, VerifyResultJson,
};
pub use events::EventJson;
pub use nodes::{
    gpus_summary, node_state_word, scheduling_word, swarm_role_word, swarm_summary, GpuJson,
    GpuSampleJson, HostMetricsJson, NodeJson, NodesJson, SwarmJson,
};
pub use secrets::{SecretHistoryJson, SecretJson, SecretListJson, SecretVersionJson};
pub use status::{
    health_word, workload_state, workload_state_word, ControlPlaneJson, CoordinatorJson,
    InstanceStatusJson, RolloutJson, ServiceStatusJson, StatusJson, StoreHealthJson,
    SwarmServiceJson,
};

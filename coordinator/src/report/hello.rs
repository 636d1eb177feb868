//! An agent's Hello: what it says of its host and which protocol
//! extensions it understands.

/// An agent's Hello: who it is is its certificate's business; this is
/// what it says of its host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentHello {
    pub facts: crate::state::Facts,
    pub agent_version: String,
    /// Protocol extensions the agent understands
    /// (`convoy_proto::CAPABILITY_ENCODED_PLAN`).
    pub capabilities: Vec<String>,
}

impl AgentHello {
    /// Whether the agent decodes `CoordinatorMessage.encoded_plan`.
    pub fn takes_encoded_plans(&self) -> bool {
        self.capabilities
            .iter()
            .any(|c| c == convoy_proto::CAPABILITY_ENCODED_PLAN)
    }
}

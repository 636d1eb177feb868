//! convoyd, Convoy's coordinator: holds desired state, places instances on
//! nodes, and streams each agent its NodePlan over mTLS gRPC.

pub mod analysis;
pub mod api;
pub mod audit;
pub mod dev;
pub mod events;
pub mod facts;
pub mod ha;
pub mod http;
pub mod metrics;
pub mod notify;
/// The CA and certificates (the `convoy-pki` crate, shared with the load test).
pub use convoy_pki as pki;
pub mod placement;
pub mod proxy_gates;
pub mod proxy_stats;
pub mod report;
pub mod rollout;
pub mod secrets;
pub mod server;
pub mod snapshot;
pub mod spec;
pub mod state;
pub mod store;
pub mod swarm;
pub mod tls;
pub mod tokens;
pub mod tunnels;

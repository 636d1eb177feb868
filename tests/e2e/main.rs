//! End-to-end tests: the real `convoyd`, real agents (two node identities on
//! the machine's one Docker daemon) and the real `convoy` CLI. Every test
//! asserts on what Docker really runs as well as on what Convoy reports.
//!
//! Needs `cargo build --workspace` first and a reachable Docker daemon
//! (`CONVOY_SKIP_DOCKER_TESTS=1` skips the tests that need one).

mod analysis;
mod bad_input;
mod compose_files;
mod configs;
mod coordinator_restart;
mod dashboard;
mod depends_on;
mod deploy;
mod dev;
mod drain;
mod environments;
mod exec;
mod failover;
mod gpu;
mod ha;
mod health;
mod host_access;
mod hostile_specs;
mod images;
mod join;
mod logs;
mod networks;
mod node_loss;
mod notify;
mod ownership;
mod packages;
mod partition;
mod placement;
mod policies;
mod prometheus;
mod proxy;
mod proxy_gates;
mod proxy_tls;
mod rbac;
mod registries;
mod restarts;
mod revocation;
mod rollouts;
mod scaling;
mod secret_delivery;
mod secrets;
mod security;
mod snapshot;
mod stack;
mod swarm;
mod swarm_driver;
mod systemd;
mod volumes;

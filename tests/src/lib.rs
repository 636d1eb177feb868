//! The end-to-end harness: starts the real `convoyd` and `convoy-agent`
//! binaries against the machine's real Docker daemon, drives them with the
//! real `convoy` CLI, and looks at the containers Docker really runs.
//!
//! Build the workspace first (`cargo build --workspace`); the binaries are
//! taken from the target dir the test executable runs from. Set
//! `CONVOY_SKIP_DOCKER_TESTS=1` to skip the tests that need Docker.

pub mod bins;
pub mod canary;
pub mod cli;
pub mod cluster;
pub mod docker;
pub mod etcd;
pub mod events;
pub mod ha;
pub mod http;
pub mod image;
pub mod process;
pub mod prom;
pub mod spec;
pub mod swarm;
pub mod systemd;
pub mod wait;

pub use cli::{ApplyReport, DeleteReport, InstanceStatus, NodeInfo, ServiceStatus};
pub use cluster::Cluster;
pub use docker::Container;
pub use spec::ServiceSpec;
pub use wait::{wait_until, SETTLE};

/// Skips the calling test (returns early, saying so) when
/// `CONVOY_SKIP_DOCKER_TESTS=1`; otherwise fails it unless Docker answers.
#[macro_export]
macro_rules! skip_without_docker {
    () => {
        if $crate::docker::skip_docker_tests() {
            eprintln!(
                "skipped {}: CONVOY_SKIP_DOCKER_TESTS=1",
                ::std::thread::current().name().unwrap_or("test")
            );
            return;
        }
    };
}

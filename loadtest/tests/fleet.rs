//! The scale harness as a correctness test (issue 7), small enough for CI:
//! 200 simulated agents against the debug `convoyd`. All connect, all
//! acknowledge one global apply and report their instances running, a
//! frozen handful is marked lost within the bound and no other node is,
//! and the coordinator survives it all. Needs `cargo build --workspace`
//! first (the e2e tests' rule): `convoyd` is taken from the target dir.

use std::time::Duration;

use convoy_loadtest::{
    child,
    events::Watcher,
    scenario::{loss, Bench, Common, SERVICE},
};
use convoy_proto as pb;

const AGENTS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_agents_ack_a_global_apply_and_only_frozen_ones_are_marked_lost() {
    let convoyd = child::default_convoyd();
    assert!(
        convoyd.is_file(),
        "`{}` is missing: run `cargo build --workspace` first",
        convoyd.display()
    );
    let mut bench = Bench::start(&Common::for_test(convoyd, AGENTS))
        .await
        .expect("every agent connects and its node is ready");
    let fleet = bench.fleet();
    let nodes = bench.control.nodes().await.unwrap();
    assert_eq!(nodes.len(), AGENTS);
    assert!(nodes.iter().all(|n| n.state == pb::NodeState::Ready as i32));

    // One apply touches every node: every agent acknowledges it, and the
    // coordinator counts one running instance per node.
    let watcher = Watcher::start(&bench.control).await.unwrap();
    bench
        .deploy_everywhere(1)
        .await
        .expect("every agent acks the global apply");
    bench
        .wait_coordinator_view(Duration::from_secs(30), true)
        .await
        .expect("the coordinator sees every ack");
    let mut running = 0;
    for _ in 0..100 {
        running = bench.control.status(SERVICE).await.unwrap().running;
        if running as usize == AGENTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(running as usize, AGENTS, "instances running");

    // Five agents freeze without a FIN: each is marked lost within 3 s of
    // silence plus the sweep (and a debug build's slack), no other is, and
    // all come back once thawed.
    let round = loss::freeze_round(&bench, &watcher, 5, 0, Duration::from_secs(15))
        .await
        .unwrap();
    assert_eq!(round.detected, 5, "frozen agents marked lost");
    assert!(
        round.false_lost.is_empty(),
        "nodes marked lost that were not frozen: {:?}",
        round.false_lost
    );
    assert!(
        round.detection.max < 5000.0,
        "lost only after {} ms",
        round.detection.max
    );
    assert!(
        round.recovered_ms.is_some(),
        "frozen nodes never ready again"
    );
    bench
        .wait_coordinator_view(Duration::from_secs(15), false)
        .await
        .expect("every node ready again");

    let counters = fleet.counters();
    assert_eq!(
        counters
            .session_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "a session failed: {}",
        counters.last_error()
    );
    assert_eq!(watcher.with(|s| s.gaps), 0, "the watcher missed events");
    assert!(bench.coord.running(), "convoyd exited");
    assert!(!bench.coord.log().contains("panicked"), "convoyd panicked");
    bench.stop().await;
}

//! The scale harness as a correctness test (issue 7), small enough for CI:
//! 200 simulated agents against the debug `convoyd`. All connect, all
//! acknowledge one global apply and report their instances running, a
//! frozen handful is marked lost within the bound and no other node is,
//! the coordinator survives it all, and after it is killed and started again
//! every agent reconnects and every node is in sync with its instances where
//! they were. Needs `cargo build --workspace`
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
async fn two_hundred_agents_ack_an_apply_only_frozen_ones_are_lost_and_all_survive_a_restart() {
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

    // A restart with the whole fleet attached: every agent comes back on a
    // new session, every node is ready and has acked its plan again, and
    // every instance is still placed where it ran.
    let before: Vec<u64> = bench
        .fleet()
        .agents
        .iter()
        .map(|a| a.welcomes.load(std::sync::atomic::Ordering::Acquire))
        .collect();
    bench.coord.kill().unwrap();
    bench.coord.restart().await.expect("convoyd starts again");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let back = bench
            .fleet()
            .agents
            .iter()
            .zip(&before)
            .filter(|(a, w0)| a.welcomes.load(std::sync::atomic::Ordering::Acquire) > **w0)
            .count();
        if back == AGENTS {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{back} of {AGENTS} agents reconnected within 60 s: {}",
            bench.fleet().counters().last_error()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bench
        .wait_coordinator_view(Duration::from_secs(30), true)
        .await
        .expect("every node ready and in sync after the restart");
    let status = bench.control.status(SERVICE).await.unwrap();
    assert_eq!(
        status.running as usize, AGENTS,
        "instances running after the restart"
    );
    assert!(bench.coord.running(), "convoyd exited after the restart");
    assert!(!bench.coord.log().contains("panicked"), "convoyd panicked");
    bench.stop().await;
}

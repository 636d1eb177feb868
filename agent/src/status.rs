//! One view of the node's workloads for the session: container statuses
//! from the Docker reconciler, unit statuses from the unit reconciler and
//! Swarm services' from the Swarm driver, merged into one `Snapshot`. The
//! session's full snapshot after a (re)connect replaces everything the
//! coordinator knows of the node, so it must hold all; no source may erase
//! another's.

use std::collections::BTreeMap;

use convoy_proto::WorkloadStatus;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::reconcile::Snapshot;

/// The sources together. A workload id two report (a plan should not have
/// one) keeps the container's status, else the unit's.
pub fn merge(
    containers: &Snapshot,
    units: &BTreeMap<String, WorkloadStatus>,
    swarm: &BTreeMap<String, WorkloadStatus>,
) -> Snapshot {
    let mut statuses = swarm.clone();
    statuses.extend(units.iter().map(|(id, s)| (id.clone(), s.clone())));
    statuses.extend(
        containers
            .statuses
            .iter()
            .map(|(id, s)| (id.clone(), s.clone())),
    );
    Snapshot {
        statuses,
        containers: containers.containers,
    }
}

/// Keeps `out` equal to the merge of the sources until `shutdown` or
/// until every source is gone.
pub async fn run(
    mut containers: watch::Receiver<Snapshot>,
    mut units: watch::Receiver<BTreeMap<String, WorkloadStatus>>,
    mut swarm: watch::Receiver<BTreeMap<String, WorkloadStatus>>,
    out: watch::Sender<Snapshot>,
    shutdown: CancellationToken,
) {
    let (mut containers_open, mut units_open, mut swarm_open) = (true, true, true);
    loop {
        let next = merge(
            &containers.borrow_and_update(),
            &units.borrow_and_update(),
            &swarm.borrow_and_update(),
        );
        out.send_if_modified(|current| {
            if *current == next {
                false
            } else {
                *current = next;
                true
            }
        });
        if !containers_open && !units_open && !swarm_open {
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = containers.changed(), if containers_open => containers_open = changed.is_ok(),
            changed = units.changed(), if units_open => units_open = changed.is_ok(),
            changed = swarm.changed(), if swarm_open => swarm_open = changed.is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(id: &str, reason: &str) -> WorkloadStatus {
        WorkloadStatus {
            id: id.to_string(),
            reason: reason.to_string(),
            ..WorkloadStatus::default()
        }
    }

    #[tokio::test]
    async fn container_unit_and_swarm_statuses_reach_the_session_together() {
        let (c_tx, c_rx) = watch::channel(Snapshot::default());
        let (u_tx, u_rx) = watch::channel(BTreeMap::new());
        let (s_tx, s_rx) = watch::channel(BTreeMap::new());
        let (out_tx, mut out_rx) = watch::channel(Snapshot::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(c_rx, u_rx, s_rx, out_tx, shutdown.clone()));
        s_tx.send_replace([("prod/sw/1".to_string(), status("prod/sw/1", "s"))].into());

        c_tx.send_replace(Snapshot {
            statuses: [("prod/web/1".to_string(), status("prod/web/1", "c"))].into(),
            containers: 1,
        });
        u_tx.send_replace(
            [(
                "prod/exporter/1".to_string(),
                status("prod/exporter/1", "u"),
            )]
            .into(),
        );
        let merged = out_rx
            .wait_for(|s| s.statuses.len() == 3)
            .await
            .unwrap()
            .clone();
        assert_eq!(merged.containers, 1);
        assert_eq!(merged.statuses["prod/exporter/1"].reason, "u");
        assert_eq!(merged.statuses["prod/sw/1"].reason, "s");

        // A new container snapshot does not erase the units, nor the reverse.
        c_tx.send_replace(Snapshot::default());
        let merged = out_rx
            .wait_for(|s| !s.statuses.contains_key("prod/web/1"))
            .await
            .unwrap()
            .clone();
        assert!(merged.statuses.contains_key("prod/exporter/1"));
        assert!(merged.statuses.contains_key("prod/sw/1"));
        u_tx.send_replace(BTreeMap::new());
        s_tx.send_replace(BTreeMap::new());
        out_rx.wait_for(|s| s.statuses.is_empty()).await.unwrap();
        shutdown.cancel();
        task.await.unwrap();
    }

    #[test]
    fn a_workload_both_report_keeps_the_containers_status() {
        let containers = Snapshot {
            statuses: [("x".to_string(), status("x", "container"))].into(),
            containers: 0,
        };
        let units = [("x".to_string(), status("x", "unit"))].into();
        let swarm = [("x".to_string(), status("x", "swarm"))].into();
        assert_eq!(
            merge(&containers, &units, &swarm).statuses["x"].reason,
            "container"
        );
    }
}

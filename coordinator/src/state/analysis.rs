//! What the analysis driver (`crate::analysis`) needs of the state: the
//! running rollouts that have an analysis, and the verdicts it keeps.

use super::*;

impl Coordinator {
    /// The verdicts of the running rollouts' analyses.
    pub fn analyses(&self) -> &crate::analysis::Analyses {
        &self.analyses
    }

    /// The agents' latest proxy figures.
    pub fn proxy_figures(&self) -> &crate::proxy_stats::ProxyFigures {
        &self.proxy_figures
    }

    /// Rollouts with an analysis, running or waiting for promotion, that
    /// have switched an instance.
    pub async fn running_analyses(&self) -> Vec<crate::analysis::Running> {
        let desired = self.desired.lock().await;
        desired
            .services
            .values()
            .filter(|r| !r.deleted)
            .filter_map(|r| {
                let ro = r.rollout.as_ref()?;
                let analysis = ro.policy.analysis.as_ref()?;
                // A service's first deployment is not judged: nothing ran
                // before it, so no traffic and nothing to compare with.
                if ro.from_revision == 0 {
                    return None;
                }
                // Waiting for promotion too: a weighted canary is judged
                // while it holds its share of requests.
                if !matches!(
                    ro.state,
                    RolloutState::Running | RolloutState::WaitingPromotion
                ) {
                    return None;
                }
                let first_switch_ms = ro.switched.values().copied().min()?;
                Some(crate::analysis::Running {
                    key: (r.env.clone(), r.name.clone(), ro.to_revision),
                    analysis: analysis.clone(),
                    first_switch_ms,
                    from_revision: ro.from_revision,
                })
            })
            .collect()
    }
}

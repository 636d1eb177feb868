//! The members of the cluster and how each one answers, for `health`.

use super::connect::connect_client;
use super::*;

impl EtcdStore {
    /// Which members there are and how each answers: `NAME at URL:
    /// healthy (leader)` or `... unreachable (why)`.
    pub(super) async fn member_lines(&self) -> Vec<String> {
        let listed = self
            .within(HEALTH_TIMEOUT, |mut client| async move {
                client.member_list().await
            })
            .await;
        let members: Vec<(String, String)> = match listed {
            Ok(resp) => resp
                .members()
                .iter()
                .map(|m| {
                    let name = if m.name().is_empty() {
                        format!("{:x}", m.id())
                    } else {
                        m.name().to_string()
                    };
                    let url = m.client_urls().first().cloned().unwrap_or_default();
                    (name, url)
                })
                .collect(),
            // No list: what was configured, each asked on its own.
            _ => self
                .endpoints
                .iter()
                .map(|e| ("?".to_string(), e.clone()))
                .collect(),
        };
        let probes = members.into_iter().map(|(name, url)| async move {
            if url.is_empty() {
                return format!("{name}: not started (no client URL yet)");
            }
            match self.member_status(&url).await {
                Ok(role) => format!("{name} at {url}: healthy ({role})"),
                Err(e) => format!("{name} at {url}: unreachable ({e})"),
            }
        });
        futures::future::join_all(probes).await
    }

    /// `leader` or `follower`, from the member at `url` itself.
    async fn member_status(&self, url: &str) -> Result<&'static str, String> {
        let probe = async {
            let mut client = connect_client(
                &[url.to_string()],
                self.tls.clone(),
                self.dial_timeout.min(HEALTH_TIMEOUT),
                Some(HEALTH_TIMEOUT),
            )
            .await?;
            client.status().await
        };
        match tokio::time::timeout(HEALTH_TIMEOUT, probe).await {
            Ok(Ok(status)) => {
                let me = status.header().map(|h| h.member_id()).unwrap_or(0);
                Ok(if me != 0 && me == status.leader() {
                    "leader"
                } else if status.leader() == 0 {
                    "no leader"
                } else {
                    "follower"
                })
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {HEALTH_TIMEOUT:?}")),
        }
    }
}

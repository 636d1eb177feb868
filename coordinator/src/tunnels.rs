//! Tunnels: side streams agents open on request (`AgentService.Tunnel`,
//! docs/LOGS.md). Agents dial out, so when a caller wants something
//! streamed from a node (its logs), the coordinator registers a waiting
//! tunnel under a random id, asks the node over its Session with a
//! Command naming that id, and the agent opens `Tunnel` with the id as its
//! first message. The id is unguessable and the tunnel must come from the
//! node it was asked of (its certificate), so no other agent can answer in
//! its place.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use convoy_proto as pb;
use tokio::sync::{mpsc, oneshot};
use tonic::{Status, Streaming};

/// How long a node has to open the tunnel it was asked for.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages buffered towards the agent.
const DOWN_BUFFER: usize = 16;

/// An opened tunnel, as the caller that asked for it gets it.
pub struct Tunnel {
    /// What the agent sends up.
    pub up: Streaming<pb::TunnelUp>,
    /// What goes down to the agent; dropping it ends the agent's side.
    pub down: mpsc::Sender<pb::TunnelDown>,
}

struct Waiting {
    node: String,
    ready: oneshot::Sender<Tunnel>,
}

/// The tunnels asked for and not yet opened.
#[derive(Default)]
pub struct Tunnels {
    waiting: Mutex<HashMap<String, Waiting>>,
}

/// A tunnel asked of a node, not yet opened. Dropping it forgets the id:
/// an agent opening it later is refused.
pub struct Pending<'a> {
    hub: &'a Tunnels,
    pub id: String,
    node: String,
    ready: Option<oneshot::Receiver<Tunnel>>,
}

impl Tunnels {
    /// Registers a tunnel to be opened by `node`.
    pub fn expect(&self, node: &str) -> Pending<'_> {
        let id = hex::encode(rand::random::<[u8; 16]>());
        let (ready, rx) = oneshot::channel();
        self.lock().insert(
            id.clone(),
            Waiting {
                node: node.to_string(),
                ready,
            },
        );
        Pending {
            hub: self,
            id,
            node: node.to_string(),
            ready: Some(rx),
        }
    }

    /// An agent of `node` opened a tunnel whose first message named `id`:
    /// hands it to whoever waits for it, and returns the stream to send down.
    pub fn accept(
        &self,
        node: &str,
        id: &str,
        up: Streaming<pb::TunnelUp>,
    ) -> Result<mpsc::Receiver<pb::TunnelDown>, Status> {
        let mut waiting = self.lock();
        match waiting.get(id) {
            None => return Err(Status::not_found("no tunnel with this id is awaited")),
            Some(w) if w.node != node => {
                return Err(Status::permission_denied(format!(
                    "this tunnel was asked of node `{}`, not `{node}`",
                    w.node
                )))
            }
            Some(_) => {}
        }
        let Some(w) = waiting.remove(id) else {
            return Err(Status::not_found("no tunnel with this id is awaited"));
        };
        drop(waiting);
        let (down, rx) = mpsc::channel(DOWN_BUFFER);
        w.ready
            .send(Tunnel { up, down })
            .map_err(|_| Status::cancelled("the caller no longer waits for this tunnel"))?;
        Ok(rx)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiting>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tunnels still awaited (for tests).
    pub fn awaited(&self) -> usize {
        self.lock().len()
    }
}

impl Pending<'_> {
    /// Waits up to `timeout` for the node to open the tunnel.
    pub async fn opened(mut self, timeout: Duration) -> Result<Tunnel, String> {
        let Some(rx) = self.ready.take() else {
            return Err("the tunnel was already taken".to_string());
        };
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(tunnel)) => Ok(tunnel),
            Ok(Err(_)) => Err(format!("node `{}` did not open its tunnel", self.node)),
            Err(_) => Err(format!(
                "node `{}` did not open its tunnel within {} s",
                self.node,
                timeout.as_secs()
            )),
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.hub.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_id_or_another_nodes_tunnel_is_refused() {
        let hub = Tunnels::default();
        let pending = hub.expect("n1");
        assert_eq!(pending.id.len(), 32);
        assert_eq!(hub.awaited(), 1);
        // `accept` needs a Streaming, which only a server makes: the
        // checks before it are on the book, tested here through it.
        {
            let waiting = hub.lock();
            assert_eq!(
                waiting.get(&pending.id).map(|w| w.node.as_str()),
                Some("n1")
            );
        }
        drop(pending);
        assert_eq!(hub.awaited(), 0, "a dropped wait forgets its id");
    }

    #[tokio::test]
    async fn a_tunnel_not_opened_in_time_names_the_node() {
        let hub = Tunnels::default();
        let pending = hub.expect("n2");
        let Err(e) = pending.opened(Duration::from_millis(10)).await else {
            panic!("opened without an agent");
        };
        assert_eq!(e, "node `n2` did not open its tunnel within 0 s");
        assert_eq!(hub.awaited(), 0);
    }
}

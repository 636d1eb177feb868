//! The coordinator's ControlService as the CLI calls it (TLS, the admin
//! token from `DATA/admin.token`): apply, list nodes, watch events, and the
//! `/metrics` counters over plain HTTP.

use std::{net::SocketAddr, path::Path, time::Duration};

use anyhow::{bail, Context, Result};
use convoy_proto as pb;
use pb::control_service_client::ControlServiceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{
    metadata::{AsciiMetadataValue, MetadataValue},
    service::{interceptor::InterceptedService, Interceptor},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
    Request, Status, Streaming,
};

/// Adds `authorization: Bearer TOKEN` to every call.
#[derive(Clone)]
pub struct Bearer(AsciiMetadataValue);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut()
            .insert(convoy_proto::AUTHORIZATION, self.0.clone());
        Ok(req)
    }
}

type Client = ControlServiceClient<InterceptedService<Channel, Bearer>>;

#[derive(Clone)]
pub struct Control {
    client: Client,
    http: Option<SocketAddr>,
    api: SocketAddr,
    data_dir: std::path::PathBuf,
}

impl Control {
    pub async fn connect(
        api: SocketAddr,
        http: Option<SocketAddr>,
        data_dir: &Path,
    ) -> Result<Self> {
        let token_path = data_dir.join("admin.token");
        let token = std::fs::read_to_string(&token_path)
            .with_context(|| format!("cannot read {}", token_path.display()))?;
        let bearer: AsciiMetadataValue =
            MetadataValue::try_from(format!("Bearer {}", token.trim()))?;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(crate::identity::ca_pem(data_dir)?))
            .domain_name(convoy_proto::COORDINATOR_SERVER_NAME);
        let channel = Endpoint::from_shared(format!("https://{api}"))?
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(5))
            // A watcher reading 100,000 events/s needs more than h2's
            // 64 KiB windows: with them, the stream stalls on every
            // WINDOW_UPDATE round trip through a busy coordinator.
            .initial_stream_window_size(Some(8 << 20))
            .initial_connection_window_size(Some(16 << 20))
            .connect()
            .await
            .with_context(|| format!("cannot reach the coordinator's API at {api}"))?;
        // ListNodes of 10,000 nodes is a few MB.
        let client = ControlServiceClient::with_interceptor(channel, Bearer(bearer))
            .max_decoding_message_size(256 << 20);
        Ok(Self {
            client,
            http,
            api,
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// The same API on a new connection, driven by the calling runtime.
    pub async fn reconnected(&self) -> Result<Self> {
        Self::connect(self.api, self.http, &self.data_dir).await
    }

    pub async fn apply(&self, filename: &str, content: &str) -> Result<pb::ApplyResponse> {
        let resp = self
            .client
            .clone()
            .apply(pb::ApplyRequest {
                filename: filename.to_string(),
                content: content.to_string(),
                dry_run: false,
                env: String::new(),
                profiles: Vec::new(),
                env_files: Default::default(),
                config_files: Default::default(),
                config_env: Default::default(),
                secret_files: Default::default(),
                secret_env: Default::default(),
            })
            .await
            .context("apply")?;
        Ok(resp.into_inner())
    }

    pub async fn nodes(&self) -> Result<Vec<pb::Node>> {
        let resp = self
            .client
            .clone()
            .list_nodes(pb::ListNodesRequest {})
            .await
            .context("list nodes")?;
        Ok(resp.into_inner().nodes)
    }

    /// One service's status in the default environment.
    pub async fn status(&self, service: &str) -> Result<pb::ServiceStatus> {
        let resp = self
            .client
            .clone()
            .status(pb::StatusRequest {
                service: service.to_string(),
                env: String::new(),
            })
            .await
            .context("status")?;
        resp.into_inner()
            .services
            .into_iter()
            .find(|s| s.name == service)
            .with_context(|| format!("no service `{service}` in the status"))
    }

    pub async fn watch(&self) -> Result<Streaming<pb::ClusterEvent>> {
        let resp = self
            .client
            .clone()
            .watch(pb::WatchRequest::default())
            .await
            .context("watch")?;
        Ok(resp.into_inner())
    }

    /// `convoy_events_total{kind="KIND"}` from `/metrics`: what the
    /// coordinator itself counts as emitted.
    pub async fn events_emitted(&self, kind: &str) -> Result<u64> {
        let addr = self.http.context("no HTTP address for /metrics")?;
        let mut conn = tokio::net::TcpStream::connect(addr).await?;
        conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut body = String::new();
        conn.read_to_string(&mut body).await?;
        let key = format!("convoy_events_total{{kind=\"{kind}\"}} ");
        for line in body.lines() {
            if let Some(v) = line.strip_prefix(&key) {
                return Ok(v.trim().parse()?);
            }
        }
        if !body.starts_with("HTTP/1.") {
            bail!("no answer from /metrics");
        }
        Ok(0)
    }
}

/// Whether every node in `names` is ready and has acknowledged its current
/// plan, as the coordinator sees it.
pub fn all_ready_and_acked(
    nodes: &[pb::Node],
    names: &std::collections::HashSet<&str>,
) -> (usize, usize) {
    let mut ready = 0;
    let mut acked = 0;
    for n in nodes.iter().filter(|n| names.contains(n.name.as_str())) {
        if n.state == pb::NodeState::Ready as i32 {
            ready += 1;
            if n.acked_generation >= n.plan_generation {
                acked += 1;
            }
        }
    }
    (ready, acked)
}

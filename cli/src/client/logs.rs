//! The call of `convoy logs`.

use anyhow::{anyhow, Result};
use convoy_proto as pb;

use super::{describe_status, Coordinator};

impl Coordinator {
    pub async fn logs(
        &mut self,
        request: pb::LogsRequest,
    ) -> Result<tonic::Streaming<pb::LogLine>> {
        self.call(request, |mut c, r| async move { c.logs(r).await })
            .await
    }

    /// The next line, `None` at the end.
    pub async fn next_line(
        &self,
        stream: &mut tonic::Streaming<pb::LogLine>,
    ) -> Result<Option<pb::LogLine>> {
        stream
            .message()
            .await
            .map_err(|status| anyhow!(describe_status(&status, &self.address)))
    }
}

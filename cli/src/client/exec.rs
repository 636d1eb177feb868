//! The calls of `convoy exec` and `convoy run`: streams both ways, so not
//! retried on another coordinator (the input cannot be replayed).

use anyhow::{anyhow, Result};
use convoy_proto as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{describe_status, finish, Coordinator, REQUEST_TIMEOUT};

impl Coordinator {
    /// Opens an exec (`run` false) or a run; `input` starts with `start`.
    pub async fn interactive(
        &mut self,
        run: bool,
        input: mpsc::Receiver<pb::ExecInput>,
    ) -> Result<tonic::Streaming<pb::ExecOutput>> {
        let mut client = self.client.clone();
        let input = ReceiverStream::new(input);
        let answer = if run {
            tokio::time::timeout(REQUEST_TIMEOUT, client.run(input)).await
        } else {
            tokio::time::timeout(REQUEST_TIMEOUT, client.exec(input)).await
        };
        finish(&self.address, answer)
    }

    pub async fn next_output(
        &self,
        stream: &mut tonic::Streaming<pb::ExecOutput>,
    ) -> Result<Option<pb::ExecOutput>> {
        stream
            .message()
            .await
            .map_err(|status| anyhow!(describe_status(&status, &self.address)))
    }
}

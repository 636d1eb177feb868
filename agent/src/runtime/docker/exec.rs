//! Running a command in a container (`exec`) and collecting its output
//! and exit code.

use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures::StreamExt;

use super::errors::{classify, short_id};
use super::DockerRuntime;
use crate::runtime::{cut_output, ExecOutput, RuntimeError, MAX_OUTPUT};

impl DockerRuntime {
    /// create_exec, start_exec collecting the output, inspect_exec for the
    /// exit code.
    pub(super) async fn exec_inner(
        &self,
        id: &str,
        command: &[String],
    ) -> Result<ExecOutput, RuntimeError> {
        let docker = self.client().await?;
        let context = format!("running `{}` in `{}`", command.join(" "), short_id(id));
        let created = docker
            .create_exec(
                id,
                CreateExecOptions {
                    cmd: Some(command.to_vec()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| classify(&context, e))?;
        let mut output = Vec::new();
        match docker
            .start_exec(&created.id, None::<StartExecOptions>)
            .await
            .map_err(|e| classify(&context, e))?
        {
            StartExecResults::Attached {
                output: mut stream, ..
            } => {
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| classify(&context, e))?;
                    // Read on to the end, keeping the start: the stream ends
                    // when the command does.
                    let bytes = chunk.into_bytes();
                    let room = (MAX_OUTPUT * 4).saturating_sub(output.len());
                    output.extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
            }
            StartExecResults::Detached => {}
        }
        // The stream can end a moment before the engine records the exit.
        let mut exit_code = None;
        for _ in 0..20 {
            let inspect = docker
                .inspect_exec(&created.id)
                .await
                .map_err(|e| classify(&context, e))?;
            if inspect.running != Some(true) {
                exit_code = inspect.exit_code;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(ExecOutput {
            exit_code,
            output: cut_output(&String::from_utf8_lossy(&output)),
        })
    }
}

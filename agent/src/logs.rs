//! The agent's side of `convoy logs` for containers (issue 19,
//! docs/LOGS.md): read a container's output from Docker with timestamps,
//! cut it into bounded lines, and hand each on without ever waiting for the
//! reader: when the channel to the reader is full, lines are dropped and
//! counted, and one marker line says how many. Called by `crate::tunnel`.

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use bollard::Docker;
use convoy_api::logs::{dropped_marker, split_docker_timestamp, LineSplitter, LogEntry, LogStream};
use futures::StreamExt;
use tokio::sync::mpsc;

/// What to read of a container's output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Only lines from this time on, unix milliseconds.
    pub since_unix_ms: Option<i64>,
    /// Only the last N lines (before following).
    pub tail: Option<u64>,
    /// Keep reading as the container writes.
    pub follow: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("reading the logs of container {container}: {source}")]
    Docker {
        container: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("--since {0} ms is past the year 2038, which Docker cannot take")]
    SinceOutOfRange(i64),
}

/// A sender that never waits: a full channel drops the line and counts
/// it; the next line that fits is preceded by a drop marker.
#[derive(Debug)]
pub struct LossySender {
    tx: mpsc::Sender<LogEntry>,
    dropped: u64,
}

/// The reader went away: stop reading.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed;

impl LossySender {
    pub fn new(tx: mpsc::Sender<LogEntry>) -> Self {
        Self { tx, dropped: 0 }
    }

    /// Hands `entry` on, or drops it when the channel is full.
    pub fn send(&mut self, entry: LogEntry) -> Result<(), Closed> {
        // A marker and its line need two free slots.
        let need = if self.dropped > 0 { 2 } else { 1 };
        if self.tx.capacity() < need {
            if self.tx.is_closed() {
                return Err(Closed);
            }
            self.dropped += 1;
            return Ok(());
        }
        if self.dropped > 0 {
            let marker = LogEntry {
                unix_nanos: entry.unix_nanos,
                stream: LogStream::Convoy,
                text: dropped_marker(self.dropped),
            };
            self.try_send(marker)?;
            self.dropped = 0;
        }
        self.try_send(entry)
    }

    /// Hands `entry` on, waiting for room: for the last word of a stream
    /// (an error, the count of drops not yet marked).
    pub async fn send_waiting(&mut self, entry: LogEntry) -> Result<(), Closed> {
        self.tx.send(entry).await.map_err(|_| Closed)?;
        self.dropped = 0;
        Ok(())
    }

    fn try_send(&mut self, entry: LogEntry) -> Result<(), Closed> {
        match self.tx.try_send(entry) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped += 1;
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Closed),
        }
    }

    /// Lines dropped since the last marker.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// Reads `container`'s output per `query` into `out` until the output ends
/// (or, when following, the container stops) or the reader goes away.
pub async fn container_logs(
    docker: &Docker,
    container: &str,
    query: &LogQuery,
    out: &mut LossySender,
) -> Result<(), LogsError> {
    let since = match query.since_unix_ms {
        Some(ms) => {
            i32::try_from(ms.div_euclid(1000)).map_err(|_| LogsError::SinceOutOfRange(ms))?
        }
        None => 0,
    };
    let options = LogsOptions {
        follow: query.follow,
        stdout: true,
        stderr: true,
        since,
        until: 0,
        timestamps: true,
        tail: query
            .tail
            .map_or_else(|| "all".to_string(), |n| n.to_string()),
    };
    let mut stream = docker.logs(container, Some(options));
    let mut stdout = LineSplitter::new();
    let mut stderr = LineSplitter::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|source| LogsError::Docker {
            container: container.to_string(),
            source,
        })?;
        let (kind, splitter, message) = match chunk {
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                (LogStream::Stdout, &mut stdout, message)
            }
            LogOutput::StdErr { message } => (LogStream::Stderr, &mut stderr, message),
            LogOutput::StdIn { .. } => continue,
        };
        for line in splitter.push(&message) {
            if out.send(entry(kind, &line)).is_err() {
                return Ok(());
            }
        }
    }
    for (kind, splitter) in [(LogStream::Stdout, stdout), (LogStream::Stderr, stderr)] {
        let mut splitter = splitter;
        if let Some(line) = splitter.finish() {
            if out.send(entry(kind, &line)).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn entry(stream: LogStream, line: &str) -> LogEntry {
    let (unix_nanos, text) = split_docker_timestamp(line);
    LogEntry {
        unix_nanos,
        stream,
        text: text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: i64) -> LogEntry {
        LogEntry {
            unix_nanos: n,
            stream: LogStream::Stdout,
            text: format!("{n}"),
        }
    }

    #[tokio::test]
    async fn a_full_channel_drops_and_marks_once() {
        let (tx, mut rx) = mpsc::channel(3);
        let mut out = LossySender::new(tx);
        for n in 0..10 {
            out.send(line(n)).unwrap();
        }
        assert_eq!(out.dropped(), 7);
        for n in 0..3 {
            assert_eq!(rx.recv().await, Some(line(n)));
        }
        out.send(line(10)).unwrap();
        let marker = rx.recv().await.unwrap();
        assert_eq!(marker.stream, LogStream::Convoy);
        assert_eq!(
            marker.text,
            "[convoy: 7 lines dropped, the reader was too slow]"
        );
        assert_eq!(rx.recv().await, Some(line(10)));
        assert_eq!(out.dropped(), 0);
    }

    #[tokio::test]
    async fn a_gone_reader_stops_the_sender() {
        let (tx, rx) = mpsc::channel(1);
        let mut out = LossySender::new(tx);
        drop(rx);
        assert_eq!(out.send(line(0)), Err(Closed));
    }

    /// Real Docker: the test app's `--version` (stdout) and a failed
    /// `--cat` (stderr) read back with their times and streams.
    #[tokio::test]
    async fn a_containers_stdout_and_stderr_are_read_with_times() {
        use bollard::models::ContainerCreateBody;
        use bollard::query_parameters::{
            CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, WaitContainerOptions,
        };
        let docker = Docker::connect_with_local_defaults().expect("docker");
        let name = format!("convoy-unit-logs-{}", std::process::id());
        // The test app image has no shell; run its binary twice instead.
        let run = |args: Vec<&str>, suffix: &str| {
            let docker = docker.clone();
            let name = format!("{name}-{suffix}");
            let args: Vec<String> = args.into_iter().map(String::from).collect();
            async move {
                let body = ContainerCreateBody {
                    image: Some("convoy-testapp:latest".into()),
                    cmd: Some(args),
                    ..Default::default()
                };
                let opts = CreateContainerOptionsBuilder::default().name(&name).build();
                docker
                    .create_container(Some(opts), body)
                    .await
                    .expect("create");
                docker
                    .start_container(
                        &name,
                        None::<bollard::query_parameters::StartContainerOptions>,
                    )
                    .await
                    .expect("start");
                let mut wait = docker.wait_container(&name, None::<WaitContainerOptions>);
                while wait.next().await.is_some() {}
                name
            }
        };
        let before = convoy_api::clock::now_unix_ms() * 1_000_000 - 5_000_000_000;
        let ok = run(vec!["/convoy-testapp", "--version"], "out").await;
        let bad = run(vec!["/convoy-testapp", "--cat", "/no/such/file"], "err").await;
        let read = |c: String| {
            let docker = docker.clone();
            async move {
                let (tx, mut rx) = mpsc::channel(64);
                let mut out = LossySender::new(tx);
                container_logs(&docker, &c, &LogQuery::default(), &mut out)
                    .await
                    .expect("logs");
                drop(out);
                let mut lines = Vec::new();
                while let Some(l) = rx.recv().await {
                    lines.push(l);
                }
                lines
            }
        };
        let out_lines = read(ok.clone()).await;
        let err_lines = read(bad.clone()).await;
        for c in [&ok, &bad] {
            let opts = RemoveContainerOptionsBuilder::default().force(true).build();
            let _ = docker.remove_container(c, Some(opts)).await;
        }
        assert_eq!(out_lines.len(), 1, "{out_lines:?}");
        assert!(
            out_lines[0].text.starts_with("convoy-testapp "),
            "{out_lines:?}"
        );
        assert_eq!(out_lines[0].stream, LogStream::Stdout);
        assert!(out_lines[0].unix_nanos > before, "{out_lines:?}");
        assert_eq!(err_lines.len(), 1, "{err_lines:?}");
        assert!(err_lines[0].text.contains("/no/such/file"), "{err_lines:?}");
        assert_eq!(err_lines[0].stream, LogStream::Stderr);
    }
}

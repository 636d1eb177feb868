//! `convoy events -o json` running in the background: every event it prints,
//! parsed, for tests that assert on what happened and in which order.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// One event as `convoy events -o json` prints it.
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub unix_ms: i64,
    pub kind: String,
    #[serde(default)]
    pub env: String,
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub instance: String,
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub fields: std::collections::BTreeMap<String, String>,
}

impl Event {
    pub fn field(&self, key: &str) -> &str {
        self.fields.get(key).map(String::as_str).unwrap_or_default()
    }
}

/// A running `convoy events` process; killed on drop.
pub struct EventWatch {
    child: Child,
    events: Arc<Mutex<Vec<Event>>>,
    /// Lines that were not events (errors), for failure messages.
    other: Arc<Mutex<Vec<String>>>,
}

impl EventWatch {
    /// Starts `cmd` (a `convoy` command with its environment) with
    /// `-o json events ARGS` and waits until the stream is open.
    pub fn start(mut cmd: Command, args: &[&str]) -> Result<Self> {
        let mut child = cmd
            .args(["-o", "json", "events"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start convoy events")?;
        let events = Arc::new(Mutex::new(Vec::new()));
        let other = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().context("no stdout")?;
        let stderr = child.stderr.take().context("no stderr")?;
        {
            let events = events.clone();
            let other = other.clone();
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    match serde_json::from_str::<Event>(&line) {
                        Ok(ev) => events.lock().unwrap().push(ev),
                        Err(_) => other.lock().unwrap().push(line),
                    }
                }
            });
        }
        {
            let other = other.clone();
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    other.lock().unwrap().push(line);
                }
            });
        }
        // The stream is open once the CLI has dialed; give it that long.
        thread::sleep(Duration::from_millis(700));
        let mut w = Self {
            child,
            events,
            other,
        };
        if let Some(status) = w.child.try_wait()? {
            bail!("convoy events exited at once ({status}): {:?}", w.other());
        }
        Ok(w)
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    pub fn other(&self) -> Vec<String> {
        self.other.lock().unwrap().clone()
    }

    /// Waits for an event matching `pred`; returns it.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Event) -> bool,
    ) -> Result<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(ev) = self.events().into_iter().find(|e| pred(e)) {
                return Ok(ev);
            }
            if Instant::now() > deadline {
                bail!(
                    "no event {what} within {timeout:?}; saw:\n{}\nother output: {:?}",
                    self.describe(),
                    self.other()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// One line per event seen, for failure messages.
    pub fn describe(&self) -> String {
        self.events()
            .iter()
            .map(|e| format!("  #{} {} {} {}", e.seq, e.kind, e.instance, e.message))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for EventWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

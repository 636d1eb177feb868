//! The last lines of a unit's journal, for the status of a unit that failed.
//!
//! The one place the agent runs a program of the host: journald has no D-Bus
//! API for reading, and its file format is not worth reimplementing for ten
//! lines. `journalctl` is given no shell, a fixed argument list, a timeout
//! and a cap on what is read; anything that goes wrong gives no lines.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// How long `journalctl` may take.
const TIMEOUT: Duration = Duration::from_secs(3);
/// At most this much of its output is read.
const MAX_BYTES: usize = 16 * 1024;
/// Each line is cut to this many bytes.
const MAX_LINE: usize = 512;

/// `journalctl -u UNIT -n LINES -o cat --no-pager -q`, bounded; empty when
/// there is no journalctl, no permission, or no answer in time.
pub async fn tail(unit: &str, lines: usize) -> Vec<String> {
    let run = async {
        let mut child = Command::new("journalctl")
            .args(["-u", unit, "-n", &lines.to_string(), "-o", "cat"])
            .args(["--no-pager", "-q"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .ok()?;
        let mut out = Vec::new();
        let stdout = child.stdout.take()?;
        stdout
            .take(MAX_BYTES as u64)
            .read_to_end(&mut out)
            .await
            .ok()?;
        let status = child.wait().await.ok()?;
        status.success().then_some(out)
    };
    match tokio::time::timeout(TIMEOUT, run).await {
        Ok(Some(out)) => last_lines(&String::from_utf8_lossy(&out), lines),
        _ => Vec::new(),
    }
}

/// The last `n` non-empty lines of `text`, each cut to `MAX_LINE` bytes.
pub fn last_lines(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| {
            let mut end = l.len().min(MAX_LINE);
            while !l.is_char_boundary(end) {
                end -= 1;
            }
            l[..end].to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_without_blanks() {
        let text = "a\n\nb\nc  \nd\n";
        assert_eq!(last_lines(text, 2), vec!["c", "d"]);
        assert_eq!(last_lines(text, 10), vec!["a", "b", "c", "d"]);
        assert!(last_lines("", 3).is_empty());
        let long = "é".repeat(600);
        assert!(last_lines(&long, 1)[0].len() <= MAX_LINE);
    }
}

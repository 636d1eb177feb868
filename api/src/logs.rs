//! The pieces of `convoy logs` that every binary shares (issue 19): what a
//! log line is, the `--since` flag, Docker's timestamp prefix, journald's
//! JSON entries, cutting a byte stream into bounded lines, and the lossy
//! hand-off that drops lines (and says so with one marker line) instead of
//! ever making a fast writer wait for a slow reader. docs/LOGS.md describes
//! the behaviour these give.

use std::collections::VecDeque;
use std::time::UNIX_EPOCH;

use convoy_proto as pb;

use crate::clock;

/// The longest line handed on (16 KiB); a longer one is cut there and ends
/// with [`CUT_MARK`].
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Appended to a line cut at [`MAX_LINE_BYTES`].
pub const CUT_MARK: &str = " [convoy: line cut at 16 KiB]";

/// Which output of the workload a line came from. journald keeps no such
/// split for a unit's output, so unit lines are `Stdout` unless their
/// priority is error or worse (docs/LOGS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
    /// A line Convoy itself wrote into the stream (drop and cut markers).
    Convoy,
}

impl LogStream {
    /// Its name where a line is JSON (the dashboard's `/api/logs`).
    pub fn name(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::Convoy => "convoy",
        }
    }
}

/// One line of a workload's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// When the runtime received it, unix nanoseconds (0 if unknown).
    pub unix_nanos: i64,
    pub stream: LogStream,
    /// The text, without its line end, at most [`MAX_LINE_BYTES`] plus
    /// [`CUT_MARK`].
    pub text: String,
}

/// A [`LogEntry`] with the instance (as `convoy status` names it, or the
/// unit) and node it came from: what crosses the wire as `pb::LogLine`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceLine {
    pub instance: String,
    pub node: String,
    pub entry: LogEntry,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogLineError {
    #[error("log line has no instance")]
    NoInstance,
    #[error("log line of {instance} has an unknown stream {value}")]
    UnknownStream { instance: String, value: i32 },
    #[error("log line of {instance} has a negative time {value}")]
    NegativeTime { instance: String, value: i64 },
    #[error("log line of {instance} is {len} bytes, over the limit of {limit}")]
    TooLong {
        instance: String,
        len: usize,
        limit: usize,
    },
}

impl TryFrom<pb::LogLine> for InstanceLine {
    type Error = LogLineError;

    fn try_from(line: pb::LogLine) -> Result<Self, Self::Error> {
        let pb::LogLine {
            instance,
            node,
            unix_nanos,
            stream,
            text,
        } = line;
        if instance.is_empty() {
            return Err(LogLineError::NoInstance);
        }
        let stream = match pb::LogStream::try_from(stream) {
            Ok(pb::LogStream::Stdout) => LogStream::Stdout,
            Ok(pb::LogStream::Stderr) => LogStream::Stderr,
            Ok(pb::LogStream::Convoy) => LogStream::Convoy,
            Ok(pb::LogStream::Unspecified) | Err(_) => {
                return Err(LogLineError::UnknownStream {
                    instance,
                    value: stream,
                })
            }
        };
        if unix_nanos < 0 {
            return Err(LogLineError::NegativeTime {
                instance,
                value: unix_nanos,
            });
        }
        // Markers are added after the cap, so allow for the longest of them.
        let limit = MAX_LINE_BYTES + 128;
        if text.len() > limit {
            return Err(LogLineError::TooLong {
                instance,
                len: text.len(),
                limit,
            });
        }
        Ok(Self {
            instance,
            node,
            entry: LogEntry {
                unix_nanos,
                stream,
                text,
            },
        })
    }
}

impl From<InstanceLine> for pb::LogLine {
    fn from(line: InstanceLine) -> Self {
        let InstanceLine {
            instance,
            node,
            entry,
        } = line;
        let LogEntry {
            unix_nanos,
            stream,
            text,
        } = entry;
        let stream = match stream {
            LogStream::Stdout => pb::LogStream::Stdout,
            LogStream::Stderr => pb::LogStream::Stderr,
            LogStream::Convoy => pb::LogStream::Convoy,
        };
        Self {
            instance,
            node,
            unix_nanos,
            stream: stream.into(),
            text,
        }
    }
}

/// The marker that stands for `n` dropped lines.
pub fn dropped_marker(n: u64) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!("[convoy: {n} line{s} dropped, the reader was too slow]")
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SinceError {
    #[error(
        "--since `{0}` is neither a duration (10m, 2h, 1d) nor an RFC 3339 time \
         (2026-12-04T18:00:00Z)"
    )]
    Malformed(String),
    #[error("--since `{0}` is before 1970 or too far back")]
    OutOfRange(String),
}

/// `--since`: a duration back from `now_unix_ms` (`10m`, `2h`, `90s`, `1d`)
/// or an RFC 3339 time; the answer is unix milliseconds.
pub fn parse_since(text: &str, now_unix_ms: i64) -> Result<i64, SinceError> {
    let text = text.trim();
    if text.contains('T') || text.contains('-') || text.contains(':') {
        let t = clock::parse_rfc3339(text).ok_or_else(|| SinceError::Malformed(text.into()))?;
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map_err(|_| SinceError::OutOfRange(text.into()))?
            .as_millis();
        return i64::try_from(ms).map_err(|_| SinceError::OutOfRange(text.into()));
    }
    let secs = clock::parse_duration_secs(text).map_err(|_| SinceError::Malformed(text.into()))?;
    let back = i64::try_from(secs)
        .ok()
        .and_then(|s| s.checked_mul(1000))
        .ok_or_else(|| SinceError::OutOfRange(text.into()))?;
    let at = now_unix_ms
        .checked_sub(back)
        .ok_or_else(|| SinceError::OutOfRange(text.into()))?;
    if at < 0 {
        return Err(SinceError::OutOfRange(text.into()));
    }
    Ok(at)
}

/// Docker's `timestamps: true` prefix (`2026-12-04T18:00:00.123456789Z `)
/// split off a line: the time in unix nanoseconds and the rest. A line
/// without a readable prefix comes back whole with time 0.
pub fn split_docker_timestamp(line: &str) -> (i64, &str) {
    let Some((stamp, rest)) = line.split_once(' ') else {
        return (0, line);
    };
    match clock::parse_rfc3339(stamp)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
    {
        Some(nanos) => (nanos, rest),
        None => (0, line),
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JournalError {
    #[error("journal entry is not JSON: {0}")]
    NotJson(String),
    #[error("journal entry has no {0} field")]
    Missing(&'static str),
    #[error("journal entry's {field} is malformed: {value}")]
    Malformed { field: &'static str, value: String },
}

/// One line of `journalctl -o json` as a [`LogEntry`]: `MESSAGE` (text, or
/// the byte array journald uses for non-UTF-8 text, read lossily),
/// `__REALTIME_TIMESTAMP` (microseconds) and `PRIORITY` (0–3 is stderr).
pub fn journal_entry(line: &str) -> Result<LogEntry, JournalError> {
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| JournalError::NotJson(e.to_string()))?;
    let micros = v
        .get("__REALTIME_TIMESTAMP")
        .ok_or(JournalError::Missing("__REALTIME_TIMESTAMP"))?;
    let micros_text = micros
        .as_str()
        .map(str::to_owned)
        .unwrap_or(micros.to_string());
    let unix_nanos = micros_text
        .parse::<i64>()
        .ok()
        .and_then(|us| us.checked_mul(1000))
        .ok_or(JournalError::Malformed {
            field: "__REALTIME_TIMESTAMP",
            value: micros_text.clone(),
        })?;
    let message = match v.get("MESSAGE") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(bytes)) => {
            let bytes: Option<Vec<u8>> = bytes
                .iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            let bytes = bytes.ok_or(JournalError::Malformed {
                field: "MESSAGE",
                value: "a byte array with a non-byte element".into(),
            })?;
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => {
            return Err(JournalError::Malformed {
                field: "MESSAGE",
                value: other.to_string(),
            })
        }
    };
    let stream = match v.get("PRIORITY").and_then(|p| p.as_str()) {
        Some("0" | "1" | "2" | "3") => LogStream::Stderr,
        _ => LogStream::Stdout,
    };
    let (text, _) = cap_line(message.trim_end_matches(['\n', '\r']));
    Ok(LogEntry {
        unix_nanos,
        stream,
        text,
    })
}

/// `text` cut to at most [`MAX_LINE_BYTES`] at a character boundary, with
/// [`CUT_MARK`] appended when cut; the flag says whether it was.
pub fn cap_line(text: &str) -> (String, bool) {
    if text.len() <= MAX_LINE_BYTES {
        return (text.to_owned(), false);
    }
    let mut end = MAX_LINE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (format!("{}{CUT_MARK}", &text[..end]), true)
}

/// Cuts a byte stream (a container's output in arbitrary chunks) into lines
/// without ever holding more than [`MAX_LINE_BYTES`] of an unfinished one:
/// a longer line is handed on cut, and the rest of it, up to its end, is
/// skipped.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
    /// The current line was already handed on cut; skip to its end.
    skipping: bool,
}

impl LineSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk; returns the lines it completed, without line ends.
    pub fn push(&mut self, mut chunk: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        while !chunk.is_empty() {
            let newline = chunk.iter().position(|&b| b == b'\n');
            let (piece, rest, ended) = match newline {
                Some(i) => (&chunk[..i], &chunk[i + 1..], true),
                None => (chunk, &chunk[chunk.len()..], false),
            };
            chunk = rest;
            if !self.skipping {
                let room = MAX_LINE_BYTES + 1 - self.partial.len();
                self.partial
                    .extend_from_slice(&piece[..piece.len().min(room)]);
                if self.partial.len() > MAX_LINE_BYTES {
                    out.push(self.take());
                    self.skipping = !ended;
                    continue;
                }
            }
            if ended {
                if self.skipping {
                    self.skipping = false;
                } else {
                    out.push(self.take());
                }
            }
        }
        out
    }

    /// The unfinished last line at the end of the stream, if any.
    pub fn finish(&mut self) -> Option<String> {
        if self.partial.is_empty() || self.skipping {
            self.partial.clear();
            self.skipping = false;
            return None;
        }
        Some(self.take())
    }

    fn take(&mut self) -> String {
        let bytes = std::mem::take(&mut self.partial);
        let text = String::from_utf8_lossy(&bytes);
        cap_line(text.trim_end_matches('\r')).0
    }
}

/// A bounded queue between a producer that must never wait (the agent's log
/// source, the coordinator's read of a tunnel) and a consumer that may be
/// slow (the tunnel, the CLI). When full, new lines are dropped and counted;
/// the next line that fits is preceded by one [`dropped_marker`] line.
#[derive(Debug)]
pub struct DropQueue {
    lines: VecDeque<LogEntry>,
    capacity: usize,
    dropped: u64,
    dropped_total: u64,
}

impl DropQueue {
    /// `capacity` lines at most (at least 2: one line and one marker).
    pub fn new(capacity: usize) -> Self {
        Self {
            lines: VecDeque::new(),
            capacity: capacity.max(2),
            dropped: 0,
            dropped_total: 0,
        }
    }

    /// Adds a line, or drops it (counted) when the queue is full. A pending
    /// drop count is written as a marker first, which needs room for both.
    pub fn push(&mut self, entry: LogEntry) {
        let need = if self.dropped > 0 { 2 } else { 1 };
        if self.lines.len() + need > self.capacity {
            self.dropped += 1;
            self.dropped_total += 1;
            return;
        }
        if self.dropped > 0 {
            self.lines.push_back(LogEntry {
                unix_nanos: entry.unix_nanos,
                stream: LogStream::Convoy,
                text: dropped_marker(self.dropped),
            });
            self.dropped = 0;
        }
        self.lines.push_back(entry);
    }

    /// The oldest line, if any.
    pub fn pop(&mut self) -> Option<LogEntry> {
        self.lines.pop_front()
    }

    /// Lines dropped and not yet marked: the caller writes
    /// [`dropped_marker`] for them at the end of the stream.
    pub fn take_unmarked(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// All lines ever dropped (for metrics and tests).
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }
}

/// Orders lines of several instances by time for a non-follow read; lines
/// of equal time keep their order (a stable sort), so one instance's lines
/// stay as it wrote them.
pub fn sort_by_time<T>(lines: &mut [T], time: impl Fn(&T) -> i64) {
    lines.sort_by_key(|l| time(l));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: i64) -> LogEntry {
        LogEntry {
            unix_nanos: n,
            stream: LogStream::Stdout,
            text: format!("line {n}"),
        }
    }

    #[test]
    fn since_takes_a_duration_back_from_now() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_since("10m", now), Ok(now - 600_000));
        assert_eq!(parse_since("90s", now), Ok(now - 90_000));
        assert_eq!(parse_since("1d", now), Ok(now - 86_400_000));
    }

    #[test]
    fn since_takes_an_rfc3339_time() {
        assert_eq!(
            parse_since("2024-02-29T12:34:56Z", 0),
            Ok(1_709_210_096_000)
        );
        assert_eq!(
            parse_since("2024-02-29T13:34:56.5+01:00", 0),
            Ok(1_709_210_096_500)
        );
    }

    #[test]
    fn since_refuses_what_it_cannot_read() {
        assert_eq!(
            parse_since("yesterday", 0),
            Err(SinceError::Malformed("yesterday".into()))
        );
        assert_eq!(
            parse_since("2024-13-01T00:00:00Z", 0),
            Err(SinceError::Malformed("2024-13-01T00:00:00Z".into()))
        );
        assert_eq!(
            parse_since("0s", 0),
            Err(SinceError::Malformed("0s".into()))
        );
        assert_eq!(
            parse_since("10m", 1000),
            Err(SinceError::OutOfRange("10m".into()))
        );
        let msg = parse_since("soon", 0).unwrap_err().to_string();
        assert!(msg.contains("`soon`") && msg.contains("10m"), "{msg}");
    }

    #[test]
    fn docker_prefix_is_split_off_with_nanoseconds() {
        let (t, rest) = split_docker_timestamp("2024-02-29T12:34:56.123456789Z hello world");
        assert_eq!(t, 1_709_210_096_123_456_789);
        assert_eq!(rest, "hello world");
        assert_eq!(
            split_docker_timestamp("no stamp here"),
            (0, "no stamp here")
        );
        assert_eq!(split_docker_timestamp("oneword"), (0, "oneword"));
        let (t, rest) = split_docker_timestamp("2024-02-29T12:34:56Z ");
        assert_eq!((t, rest), (1_709_210_096_000_000_000, ""));
    }

    #[test]
    fn journal_entries_are_read() {
        let e = journal_entry(
            r#"{"__REALTIME_TIMESTAMP":"1709210096123456","MESSAGE":"hi there\n","PRIORITY":"6"}"#,
        )
        .unwrap();
        assert_eq!(
            e,
            LogEntry {
                unix_nanos: 1_709_210_096_123_456_000,
                stream: LogStream::Stdout,
                text: "hi there".into()
            }
        );
        let e =
            journal_entry(r#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":[104,105,255],"PRIORITY":"3"}"#)
                .unwrap();
        assert_eq!(e.text, "hi\u{fffd}");
        assert_eq!(e.stream, LogStream::Stderr);
    }

    #[test]
    fn bad_journal_entries_are_typed_errors() {
        assert!(matches!(journal_entry("{"), Err(JournalError::NotJson(_))));
        assert_eq!(
            journal_entry(r#"{"MESSAGE":"x"}"#),
            Err(JournalError::Missing("__REALTIME_TIMESTAMP"))
        );
        assert!(matches!(
            journal_entry(r#"{"__REALTIME_TIMESTAMP":"soon","MESSAGE":"x"}"#),
            Err(JournalError::Malformed {
                field: "__REALTIME_TIMESTAMP",
                ..
            })
        ));
        assert!(matches!(
            journal_entry(r#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":[1,300]}"#),
            Err(JournalError::Malformed {
                field: "MESSAGE",
                ..
            })
        ));
    }

    #[test]
    fn splitter_joins_chunks_and_splits_lines() {
        let mut s = LineSplitter::new();
        assert_eq!(s.push(b"hel"), Vec::<String>::new());
        assert_eq!(s.push(b"lo\nwor"), vec!["hello"]);
        assert_eq!(s.push(b"ld\r\n\nlast"), vec!["world", ""]);
        assert_eq!(s.finish(), Some("last".into()));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn splitter_cuts_long_lines_and_skips_their_rest() {
        let mut s = LineSplitter::new();
        let long = vec![b'a'; MAX_LINE_BYTES + 100];
        let out = s.push(&long);
        assert_eq!(out.len(), 1);
        assert!(out[0].ends_with(CUT_MARK));
        assert_eq!(out[0].len(), MAX_LINE_BYTES + CUT_MARK.len());
        // The rest of the long line, in more chunks, is skipped.
        assert!(s.push(&[b'a'; 5000]).is_empty());
        assert_eq!(s.push(b"aaa\nnext\n"), vec!["next"]);
        // Exactly at the limit is not cut.
        let exact = [vec![b'b'; MAX_LINE_BYTES], b"\n".to_vec()].concat();
        assert_eq!(s.push(&exact), vec!["b".repeat(MAX_LINE_BYTES)]);
    }

    #[test]
    fn cap_line_cuts_at_a_char_boundary() {
        let text = "é".repeat(MAX_LINE_BYTES);
        let (cut, was) = cap_line(&text);
        assert!(was);
        let body = cut.strip_suffix(CUT_MARK).unwrap();
        assert!(body.len() <= MAX_LINE_BYTES && body.len() > MAX_LINE_BYTES - 2);
        assert_eq!(cap_line("short"), ("short".into(), false));
    }

    #[test]
    fn drop_queue_drops_when_full_and_marks_once() {
        let mut q = DropQueue::new(3);
        for n in 0..10 {
            q.push(line(n));
        }
        assert_eq!(q.len(), 3);
        assert_eq!(q.dropped_total(), 7);
        assert_eq!(q.pop(), Some(line(0)));
        // One free slot is not enough for marker + line: still dropped.
        q.push(line(10));
        assert_eq!(q.dropped_total(), 8);
        assert_eq!(q.pop(), Some(line(1)));
        q.push(line(11));
        assert_eq!(q.pop(), Some(line(2)));
        let marker = q.pop().unwrap();
        assert_eq!(marker.stream, LogStream::Convoy);
        assert_eq!(
            marker.text,
            "[convoy: 8 lines dropped, the reader was too slow]"
        );
        assert_eq!(q.pop(), Some(line(11)));
        assert!(q.is_empty());
        assert_eq!(q.take_unmarked(), 0);
    }

    #[test]
    fn drop_queue_reports_unmarked_drops_at_the_end() {
        let mut q = DropQueue::new(2);
        q.push(line(0));
        q.push(line(1));
        q.push(line(2));
        assert_eq!(q.take_unmarked(), 1);
        assert_eq!(q.take_unmarked(), 0);
        assert_eq!(
            dropped_marker(1),
            "[convoy: 1 line dropped, the reader was too slow]"
        );
    }

    #[test]
    fn sort_by_time_is_stable() {
        let mut v = vec![(5, "a"), (1, "b"), (5, "c"), (0, "d")];
        sort_by_time(&mut v, |l| l.0);
        assert_eq!(v, vec![(0, "d"), (1, "b"), (5, "a"), (5, "c")]);
    }

    #[test]
    fn log_lines_cross_the_wire_both_ways() {
        let line = InstanceLine {
            instance: "web-2".into(),
            node: "n1".into(),
            entry: LogEntry {
                unix_nanos: 7,
                stream: LogStream::Stderr,
                text: "boom".into(),
            },
        };
        let wire = pb::LogLine::from(line.clone());
        assert_eq!(wire.stream, pb::LogStream::Stderr as i32);
        assert_eq!(InstanceLine::try_from(wire), Ok(line));
    }

    #[test]
    fn bad_log_lines_are_typed_errors() {
        let good = pb::LogLine {
            instance: "web-1".into(),
            node: "n1".into(),
            unix_nanos: 1,
            stream: pb::LogStream::Stdout as i32,
            text: "x".into(),
        };
        let with = |f: fn(&mut pb::LogLine)| {
            let mut l = good.clone();
            f(&mut l);
            InstanceLine::try_from(l)
        };
        assert_eq!(with(|l| l.instance.clear()), Err(LogLineError::NoInstance));
        assert_eq!(
            with(|l| l.stream = 0),
            Err(LogLineError::UnknownStream {
                instance: "web-1".into(),
                value: 0
            })
        );
        assert_eq!(
            with(|l| l.stream = 99),
            Err(LogLineError::UnknownStream {
                instance: "web-1".into(),
                value: 99
            })
        );
        assert!(matches!(
            with(|l| l.unix_nanos = -1),
            Err(LogLineError::NegativeTime { .. })
        ));
        let err = with(|l| l.text = "a".repeat(MAX_LINE_BYTES + 200)).unwrap_err();
        assert!(err.to_string().contains("web-1"), "{err}");
    }
}

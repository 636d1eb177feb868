//! How `convoy logs` prints lines (issue 19, docs/LOGS.md): each line
//! prefixed with its instance, padded to the widest instance seen, like
//! `docker compose logs`; one colour per instance (in order of first
//! appearance) when colour is on; optionally the time.

use std::collections::HashMap;

use convoy_api::clock::rfc3339_ms;
use convoy_api::logs::{InstanceLine, LogStream};

/// ANSI foreground colours that read on dark and light terminals.
const COLOURS: [u8; 6] = [36, 33, 32, 35, 34, 31];

/// Whether to colour: only on a terminal and only without `NO_COLOR` set
/// (to anything non-empty, per no-color.org).
pub fn use_colour(is_terminal: bool, no_color: Option<&str>) -> bool {
    is_terminal && no_color.is_none_or(str::is_empty)
}

/// Prints lines of several instances with a stable prefix each.
#[derive(Debug)]
pub struct LogPrinter {
    colour: bool,
    timestamps: bool,
    width: usize,
    colours: HashMap<String, u8>,
}

impl LogPrinter {
    /// `instances`: the names known up front (their widest sets the padding).
    pub fn new<'a>(
        instances: impl IntoIterator<Item = &'a str>,
        colour: bool,
        timestamps: bool,
    ) -> Self {
        let mut p = Self {
            colour,
            timestamps,
            width: 0,
            colours: HashMap::new(),
        };
        for name in instances {
            p.colour_of(name);
        }
        p
    }

    fn colour_of(&mut self, instance: &str) -> u8 {
        self.width = self.width.max(instance.chars().count());
        let next = COLOURS[self.colours.len() % COLOURS.len()];
        *self.colours.entry(instance.to_owned()).or_insert(next)
    }

    /// One printable line, without its newline.
    pub fn line(&mut self, line: &InstanceLine) -> String {
        let colour = self.colour_of(&line.instance);
        let name = format!("{:<width$} |", line.instance, width = self.width);
        let prefix = if self.colour {
            format!("\x1b[{colour}m{name}\x1b[0m")
        } else {
            name
        };
        let time = if self.timestamps {
            format!(" {}", rfc3339_ms(line.entry.unix_nanos / 1_000_000))
        } else {
            String::new()
        };
        let text = if line.entry.stream == LogStream::Convoy && self.colour {
            format!("\x1b[2m{}\x1b[0m", line.entry.text)
        } else {
            line.entry.text.clone()
        };
        format!("{prefix}{time} {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use convoy_api::logs::LogEntry;

    fn l(instance: &str, nanos: i64, text: &str) -> InstanceLine {
        InstanceLine {
            instance: instance.into(),
            node: "n1".into(),
            entry: LogEntry {
                unix_nanos: nanos,
                stream: LogStream::Stdout,
                text: text.into(),
            },
        }
    }

    #[test]
    fn lines_are_prefixed_and_padded() {
        let mut p = LogPrinter::new(["web-1", "web-10"], false, false);
        assert_eq!(p.line(&l("web-1", 0, "hi")), "web-1  | hi");
        assert_eq!(p.line(&l("web-10", 0, "yo")), "web-10 | yo");
    }

    #[test]
    fn timestamps_are_rfc3339_ms() {
        let mut p = LogPrinter::new(["a"], false, true);
        assert_eq!(
            p.line(&l("a", 1_709_210_096_007_000_000, "x")),
            "a | 2024-02-29T12:34:56.007Z x"
        );
    }

    #[test]
    fn each_instance_keeps_its_colour() {
        let mut p = LogPrinter::new(["a", "b"], true, false);
        assert_eq!(p.line(&l("a", 0, "x")), "\x1b[36ma |\x1b[0m x");
        assert_eq!(p.line(&l("b", 0, "x")), "\x1b[33mb |\x1b[0m x");
        assert_eq!(p.line(&l("a", 0, "y")), "\x1b[36ma |\x1b[0m y");
    }

    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some("")));
        assert!(!use_colour(true, Some("1")));
        assert!(!use_colour(false, None));
    }
}

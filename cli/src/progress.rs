//! Live progress of `apply --wait` and `node drain --wait`: one bar per
//! service, its healthy instances of those wanted, drawn with `indicatif`
//! when stdout and stderr are terminals; otherwise one plain line on
//! stderr each time a service's count changes (`web: 2/3 healthy`), which
//! is what scripts and tests read. `NO_COLOR` (any value) turns colour off.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether the user asked for no colour (<https://no-color.org>): set, to
/// any non-empty value.
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// One service's progress: healthy instances of those wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Count {
    pub healthy: u32,
    pub wanted: u32,
}

/// The plain line for a service's count.
pub fn plain_line(service: &str, count: Count, note: &str) -> String {
    let mut line = format!("{service}: {}/{} healthy", count.healthy, count.wanted);
    if !note.is_empty() {
        line.push_str(" (");
        line.push_str(note);
        line.push(')');
    }
    line
}

enum Sink {
    Bars {
        multi: MultiProgress,
        bars: BTreeMap<String, ProgressBar>,
        style: ProgressStyle,
    },
    Lines,
}

/// Progress of several services.
pub struct Progress {
    sink: Sink,
    last: BTreeMap<String, (Count, String)>,
}

impl Progress {
    /// Bars on a terminal, plain lines elsewhere.
    pub fn new() -> Self {
        let tty = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        Self::with_bars(tty)
    }

    /// Bars (`true`) or plain lines.
    pub fn with_bars(bars: bool) -> Self {
        let sink = if bars {
            let template = if no_color() {
                "{prefix:>20} [{bar:30}] {pos}/{len} healthy {msg}"
            } else {
                "{prefix:>20.bold} [{bar:30.green/white}] {pos}/{len} healthy {msg}"
            };
            let style = ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            Sink::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: BTreeMap::new(),
                style,
            }
        } else {
            Sink::Lines
        };
        Self {
            sink,
            last: BTreeMap::new(),
        }
    }

    /// Shows `service`'s count (and a short note) if it changed.
    pub fn update(&mut self, service: &str, count: Count, note: &str) {
        let now = (count, note.to_owned());
        if self.last.get(service) == Some(&now) {
            return;
        }
        self.last.insert(service.to_owned(), now);
        match &mut self.sink {
            Sink::Lines => eprintln!("{}", plain_line(service, count, note)),
            Sink::Bars { multi, bars, style } => {
                let bar = bars.entry(service.to_owned()).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new(u64::from(count.wanted)));
                    bar.set_style(style.clone());
                    bar.set_prefix(service.to_owned());
                    bar
                });
                bar.set_length(u64::from(count.wanted));
                bar.set_position(u64::from(count.healthy.min(count.wanted)));
                bar.set_message(note.to_owned());
            }
        }
    }

    /// A message between the bars (or a plain line).
    pub fn println(&self, line: &str) {
        match &self.sink {
            Sink::Lines => eprintln!("{line}"),
            Sink::Bars { multi, .. } => {
                if multi.println(line).is_err() {
                    eprintln!("{line}");
                }
            }
        }
    }

    /// Leaves the bars as they are on screen.
    pub fn finish(&mut self) {
        if let Sink::Bars { bars, .. } = &mut self.sink {
            for bar in bars.values() {
                bar.abandon();
            }
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

/// Each service's healthy and wanted instances in a status answer,
/// named `SERVICE` (or `ENV/SERVICE` outside the default environment).
pub fn counts(status: &convoy_proto::StatusResponse) -> Vec<(String, Count)> {
    status
        .services
        .iter()
        .map(|s| {
            let name = if s.env.is_empty() || s.env == convoy_api::env::DEFAULT_ENV {
                s.name.clone()
            } else {
                format!("{}/{}", s.env, s.name)
            };
            (
                name,
                Count {
                    healthy: s.healthy,
                    wanted: s.desired,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_name_the_service_and_its_count() {
        let c = Count {
            healthy: 2,
            wanted: 3,
        };
        assert_eq!(plain_line("web", c, ""), "web: 2/3 healthy");
        assert_eq!(
            plain_line("web", c, "1 left on n1"),
            "web: 2/3 healthy (1 left on n1)"
        );
    }

    #[test]
    fn an_unchanged_count_is_not_shown_again() {
        let mut p = Progress::with_bars(false);
        p.update("web", Count::default(), "");
        assert_eq!(p.last.len(), 1);
        p.update("web", Count::default(), "");
        assert_eq!(p.last.len(), 1);
    }
}

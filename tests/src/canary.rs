//! Searching for a secret's value after a scenario: every output the
//! scenario saw is kept, with what it was, and searched at the end.

use std::path::{Path, PathBuf};
use std::process::Output;

/// Everything a scenario produced: CLI outputs, logs, HTTP answers, files.
#[derive(Default)]
pub struct Seen(pub Vec<(String, Vec<u8>)>);

impl Seen {
    /// A command's standard output and error.
    pub fn add(&mut self, what: &str, out: &Output) {
        let mut all = out.stdout.clone();
        all.extend_from_slice(&out.stderr);
        self.0.push((what.to_string(), all));
    }

    pub fn add_text(&mut self, what: &str, text: impl Into<String>) {
        self.0.push((what.to_string(), text.into().into_bytes()));
    }

    /// Every regular file under `dir`, by its path.
    pub fn add_files(&mut self, dir: &Path) {
        for f in files_under(dir) {
            let bytes = std::fs::read(&f).unwrap_or_default();
            self.0.push((f.display().to_string(), bytes));
        }
    }

    /// What each of `canaries` was found in: empty when none was.
    pub fn hits(&self, canaries: &[&str]) -> Vec<String> {
        let mut hits = Vec::new();
        for (what, bytes) in &self.0 {
            for canary in canaries {
                if contains(bytes, canary) {
                    hits.push(format!("{what} (holds {canary})"));
                }
            }
        }
        hits
    }
}

/// Whether `haystack` holds `needle`'s bytes.
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Every regular file under `dir` (none when it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            out.extend(files_under(&path));
        } else if kind.is_file() {
            out.push(path);
        }
    }
    out
}

/// A command's standard output and error, as text.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

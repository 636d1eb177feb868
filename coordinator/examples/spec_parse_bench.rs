//! Times `convoy_coordinator::spec::parse` on spec files: for issue 14's
//! old (serde_yaml) vs new (serde-saphyr) spec reader, built at each commit
//! (see BENCHMARKS.md, "YAML parser for spec files (issue 14)").
//!
//! ```sh
//! cargo run --release -p convoy-coordinator --example spec_parse_bench -- \
//!     [--rounds N] FILE...
//! ```
//!
//! Without FILE, reads every `*.yaml` under examples/, docs/ and
//! bench/yaml-parsers/corpus/. Prints, per file, the median and p95 time of
//! one `parse` over N rounds (default: about 1.5 s per file, 50 to 5,000
//! rounds), and whether the file was accepted.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut rounds: Option<usize> = None;
    let mut files: Vec<PathBuf> = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--rounds" {
            rounds = args.next().and_then(|n| n.parse().ok());
        } else {
            files.push(PathBuf::from(arg));
        }
    }
    if files.is_empty() {
        for dir in ["examples", "docs", "bench/yaml-parsers/corpus"] {
            collect(Path::new(dir), &mut files);
        }
        files.sort();
    }
    println!("| file | bytes | rounds | median µs | p95 µs | result |");
    println!("|---|---:|---:|---:|---:|---|");
    let mut total = Duration::ZERO;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read spec file");
        let name = file.display().to_string();
        let result = match convoy_coordinator::spec::parse(&name, &text) {
            Ok(spec) => format!(
                "{} services, {} warnings",
                spec.services.len(),
                spec.warnings.len()
            ),
            Err(err) => format!("refused: {err}"),
        };
        let n = rounds.unwrap_or_else(|| {
            let t = Instant::now();
            std::hint::black_box(convoy_coordinator::spec::parse(&name, &text).ok());
            let one = t.elapsed().as_secs_f64().max(1e-9);
            (1.5 / one).clamp(50.0, 5000.0) as usize
        });
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            std::hint::black_box(
                convoy_coordinator::spec::parse(&name, std::hint::black_box(&text)).ok(),
            );
            samples.push(t.elapsed());
        }
        samples.sort();
        let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
        total += at(0.5);
        println!(
            "| `{name}` | {} | {n} | {} | {} | {result} |",
            text.len(),
            micros(at(0.5)),
            micros(at(0.95)),
        );
    }
    println!("| **sum of medians** | | | **{}** | | |", micros(total));
}

fn micros(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 100.0 {
        format!("{us:.0}")
    } else {
        format!("{us:.1}")
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
}

//! Issue 14: which YAML parser reads Convoy's spec files. Measures the parse
//! time of four crates on a corpus of spec files, each into its generic value
//! type, and how each one behaves on hostile input.
//!
//! ```sh
//! cd bench/yaml-parsers
//! cargo run --release -- gen        # rewrites corpus/ (committed)
//! cargo run --release               # corpus table, then hostile table
//! cargo run --release -- corpus     # corpus table only
//! cargo run --release -- hostile    # hostile table only
//! ```
//!
//! Each hostile case runs in a child process of this binary (`case NAME
//! PARSER`), parsing on a thread with a 2 MiB stack (the size of a tokio
//! blocking-pool thread, where convoyd parses), under `ulimit -v` 4 GiB, and
//! is killed after 10 s: a stack overflow, an allocation failure or a hang
//! is then reported instead of ending the benchmark.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WALL_CAP: Duration = Duration::from_secs(10);
const MEMORY_CAP_KIB: u64 = 4 * 1024 * 1024;
const THREAD_STACK: usize = 2 * 1024 * 1024;

#[derive(Clone, Copy, PartialEq)]
enum Parser {
    SerdeYaml,
    SerdeYamlJson,
    SerdeSaphyr,
    SerdeSaphyrConvoy,
    YamlRust2,
    Saphyr,
}

const PARSERS: [Parser; 5] = [
    Parser::SerdeYaml,
    Parser::SerdeSaphyr,
    Parser::SerdeSaphyrConvoy,
    Parser::YamlRust2,
    Parser::Saphyr,
];

impl Parser {
    fn name(self) -> &'static str {
        match self {
            Parser::SerdeYaml => "serde_yaml",
            Parser::SerdeYamlJson => "serde_yaml-json",
            Parser::SerdeSaphyr => "serde-saphyr",
            Parser::SerdeSaphyrConvoy => "serde-saphyr-convoy",
            Parser::YamlRust2 => "yaml-rust2",
            Parser::Saphyr => "saphyr",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Parser::SerdeYaml => "serde_yaml 0.9.34 → serde_yaml::Value (+apply_merge)",
            Parser::SerdeYamlJson => {
                "serde_yaml 0.9.34 → serde_json::Value (merge keys not applied)"
            }
            Parser::SerdeSaphyr => "serde-saphyr 2.2.0, default options → serde_json::Value",
            Parser::SerdeSaphyrConvoy => "serde-saphyr 2.2.0, Convoy's limits → serde_json::Value",
            Parser::YamlRust2 => "yaml-rust2 0.13.2 → YamlLoader (Yaml)",
            Parser::Saphyr => "saphyr 0.3.4 → Yaml::load_from_str",
        }
    }

    fn from_name(name: &str) -> Parser {
        CORPUS_PARSERS
            .into_iter()
            .find(|p| p.name() == name)
            .unwrap_or_else(|| panic!("unknown parser {name}"))
    }
}

/// The corpus table also has serde_yaml into `serde_json::Value`, the
/// target serde-saphyr is measured with (no merge keys applied there).
const CORPUS_PARSERS: [Parser; 6] = [
    Parser::SerdeYaml,
    Parser::SerdeYamlJson,
    Parser::SerdeSaphyr,
    Parser::SerdeSaphyrConvoy,
    Parser::YamlRust2,
    Parser::Saphyr,
];

/// Convoy's options, as `coordinator/src/spec/limits.rs` sets them at
/// commit 34703b1 (depth 32, 100,000 nodes, 1,000 aliases, 100,000
/// alias-expanded events, 1 MiB), except `duplicate_keys`: Convoy hands
/// repeated keys to its own readers (`LastWins`), which refuse them; a
/// generic value has no such reader, so here the parser refuses them.
fn convoy_options() -> serde_saphyr::Options {
    let max_bytes = 1024 * 1024;
    let max_depth = 32;
    let max_nodes: usize = 100_000;
    let max_aliases = 1_000;
    let max_alias_expansion = 100_000;
    let budget = serde_saphyr::budget! {
        max_depth: max_depth,
        flow_nesting_limit: max_depth,
        max_nodes: max_nodes,
        max_events: max_nodes.saturating_mul(2).saturating_add(16),
        max_aliases: max_aliases,
        max_anchors: max_aliases,
        max_merge_keys: max_aliases,
        max_total_scalar_bytes: max_bytes,
        max_recorded_anchor_events: max_alias_expansion,
        max_recorded_anchor_bytes: max_bytes,
        max_documents: 1,
    };
    let alias_limits = serde_saphyr::alias_limits! {
        max_total_replayed_events: max_alias_expansion,
        max_replay_stack_depth: max_depth,
    };
    serde_saphyr::options! {
        budget: budget,
        alias_limits: alias_limits,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        merge_keys: serde_saphyr::MergeKeyPolicy::Merge,
        with_snippet: false,
    }
}

/// What a parse gives: the value's `Debug` text when asked for (small
/// inputs only), or the error's text and its position.
enum Outcome {
    Ok(Option<String>),
    Err {
        message: String,
        location: Option<(usize, usize)>,
    },
}

fn parse(parser: Parser, text: &str, debug: bool) -> Outcome {
    fn ok<T: std::fmt::Debug>(value: T, debug: bool) -> Outcome {
        let out = debug.then(|| format!("{value:?}"));
        black_box(&value);
        drop(value);
        Outcome::Ok(out)
    }
    match parser {
        Parser::SerdeYaml => match serde_yaml::from_str::<serde_yaml::Value>(text) {
            Ok(mut value) => match value.apply_merge() {
                Ok(()) => ok(value, debug),
                Err(err) => Outcome::Err {
                    location: err.location().map(|l| (l.line(), l.column())),
                    message: err.to_string(),
                },
            },
            Err(err) => Outcome::Err {
                location: err.location().map(|l| (l.line(), l.column())),
                message: err.to_string(),
            },
        },
        Parser::SerdeYamlJson => match serde_yaml::from_str::<serde_json::Value>(text) {
            Ok(value) => ok(value, debug),
            Err(err) => Outcome::Err {
                location: err.location().map(|l| (l.line(), l.column())),
                message: err.to_string(),
            },
        },
        Parser::SerdeSaphyr | Parser::SerdeSaphyrConvoy => {
            let result = if parser == Parser::SerdeSaphyr {
                serde_saphyr::from_str::<serde_json::Value>(text)
            } else {
                serde_saphyr::from_str_with_options::<serde_json::Value>(text, convoy_options())
            };
            match result {
                Ok(value) => ok(value, debug),
                Err(err) => Outcome::Err {
                    location: err
                        .location()
                        .filter(|l| l.line() > 0)
                        .map(|l| (l.line() as usize, l.column() as usize)),
                    message: err.to_string(),
                },
            }
        }
        Parser::YamlRust2 => match yaml_rust2::YamlLoader::load_from_str(text) {
            Ok(docs) => ok(docs, debug),
            Err(err) => Outcome::Err {
                // Marker: line 1-based, col 0-based.
                location: Some((err.marker().line(), err.marker().col() + 1)),
                message: err.to_string(),
            },
        },
        Parser::Saphyr => {
            use saphyr::LoadableYamlNode;
            match saphyr::Yaml::load_from_str(text) {
                Ok(docs) => ok(docs, debug),
                Err(err) => Outcome::Err {
                    location: Some((err.marker().line(), err.marker().col() + 1)),
                    message: err.to_string(),
                },
            }
        }
    }
}

// ---------------------------------------------------------------- corpus

fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.join("../..").canonicalize().expect("repository root")
}

fn corpus_files() -> Vec<PathBuf> {
    let root = repo_root();
    let mut files = Vec::new();
    for dir in ["examples", "docs", "bench/yaml-parsers/corpus"] {
        collect_yaml(&root.join(dir), &mut files);
    }
    files.sort();
    files
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_yaml(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn micros(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 100.0 {
        format!("{us:.0}")
    } else {
        format!("{us:.1}")
    }
}

fn run_corpus() {
    let root = repo_root();
    let files = corpus_files();
    println!("## Corpus: parse time per file, µs (median / p95), release build");
    println!();
    println!("Rounds interleave the parsers (one parse each per round), so noise");
    println!("from other processes falls on all of them alike.");
    println!();
    print!("| file | bytes | rounds |");
    for p in CORPUS_PARSERS {
        print!(" {} |", p.name());
    }
    println!();
    print!("|---|---:|---:|");
    for _ in CORPUS_PARSERS {
        print!("---:|");
    }
    println!();
    let mut totals = vec![Duration::ZERO; CORPUS_PARSERS.len()];
    for file in &files {
        let text = std::fs::read_to_string(file).expect("corpus file");
        // Every parser must read every corpus file.
        for p in CORPUS_PARSERS {
            if let Outcome::Err { message, .. } = parse(p, &text, false) {
                panic!("{} refuses {}: {message}", p.name(), file.display());
            }
        }
        // About 1.5 s per file in all, at least 50 rounds, at most 5,000.
        let start = Instant::now();
        for p in CORPUS_PARSERS {
            black_box(parse(p, &text, false));
        }
        let one_round = start.elapsed().max(Duration::from_nanos(1));
        let rounds = (1.5 / one_round.as_secs_f64()).clamp(50.0, 5000.0) as usize;
        let mut samples = vec![Vec::with_capacity(rounds); CORPUS_PARSERS.len()];
        for _ in 0..rounds {
            for (i, p) in CORPUS_PARSERS.into_iter().enumerate() {
                let t = Instant::now();
                black_box(parse(p, black_box(&text), false));
                samples[i].push(t.elapsed());
            }
        }
        let name = file.strip_prefix(&root).unwrap_or(file).display();
        print!("| `{name}` | {} | {rounds} |", text.len());
        for (i, s) in samples.iter_mut().enumerate() {
            s.sort();
            let median = percentile(s, 0.5);
            totals[i] += median;
            print!(" {} / {} |", micros(median), micros(percentile(s, 0.95)));
        }
        println!();
    }
    print!("| **sum of medians** | | |");
    for t in &totals {
        print!(" **{}** |", micros(*t));
    }
    println!();
    print!("| **÷ serde_yaml** | | |");
    for t in &totals {
        print!(" {:.2} |", t.as_secs_f64() / totals[0].as_secs_f64());
    }
    println!();
    println!();
    for p in CORPUS_PARSERS {
        println!("- `{}`: {}", p.name(), p.label());
    }
    println!();
}

// ---------------------------------------------------------------- hostile

const CASES: [(&str, &str); 12] = [
    ("nest-100000", "100,000 nested `[` (balanced)"),
    ("nest-10000", "10,000 nested `[`"),
    ("nest-2000", "2,000 nested `[`"),
    ("block-10000", "10,000 nested block lists (`- - - … x`)"),
    ("laughs", "billion laughs: 9 levels × 10 aliases"),
    ("keys-52000", "52,000 keys in one mapping"),
    ("scalar-1mib", "a 1 MiB single-line scalar"),
    ("duplicate", "duplicate key `a: 111` / `a: 222`"),
    ("merge", "merge key `<<: *base`"),
    ("error-syntax", "error location: bad indentation on line 4"),
    ("error-flow", "error location: unclosed `[` on line 4"),
    ("error-tab", "error location: tab indentation on line 3"),
];

fn case_text(name: &str) -> String {
    let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    match name {
        "nest-100000" => nest(100_000),
        "nest-10000" => nest(10_000),
        "nest-2000" => nest(2_000),
        "block-10000" => format!("{}x\n", "- ".repeat(10_000)),
        "laughs" => {
            let mut s = String::from("a: &a [");
            s.push_str(&["\"lol\""; 10].join(", "));
            s.push_str("]\n");
            let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
            for w in names.windows(2) {
                let items = vec![format!("*{}", w[0]); 10].join(", ");
                s.push_str(&format!("{}: &{} [{items}]\n", w[1], w[1]));
            }
            s
        }
        "keys-52000" => (0..52_000).map(|i| format!("k{i:05}: {i}\n")).collect(),
        "scalar-1mib" => format!("key: {}\n", "a".repeat(1024 * 1024)),
        "duplicate" => "a: 111\na: 222\n".to_owned(),
        "merge" => "base: &base\n  image: nginx\n  restart: always\n\
                    web:\n  <<: *base\n  restart: \"no\"\n"
            .to_owned(),
        "error-syntax" => "services:\n  web:\n    image: nginx\n   ports: [\"80\"]\n".to_owned(),
        "error-flow" => {
            "services:\n  web:\n    image: nginx\n    ports: [\"80\", \"443\"\n  db:\n    image: postgres\n"
                .to_owned()
        }
        "error-tab" => "services:\n  web:\n\timage: nginx\n".to_owned(),
        other => panic!("unknown case {other}"),
    }
}

/// Child mode: parse case `name` with `parser` once (the small ones up to
/// 5 times, for a median), print one line: `ok|err <µs> <peak RSS KiB> <text>`.
fn run_case(name: &str, parser: Parser) {
    let text = case_text(name);
    let name = name.to_owned();
    let line = std::thread::Builder::new()
        .stack_size(THREAD_STACK)
        .spawn(move || {
            let mut times = Vec::new();
            let mut outcome;
            loop {
                let t = Instant::now();
                outcome = parse(
                    parser,
                    &text,
                    matches!(name.as_str(), "duplicate" | "merge"),
                );
                times.push(t.elapsed());
                let spent: Duration = times.iter().sum();
                if times.len() >= 5 || spent > Duration::from_millis(500) {
                    break;
                }
            }
            times.sort();
            let median = times[times.len() / 2];
            describe(&name, outcome, median)
        })
        .expect("thread")
        .join()
        .unwrap_or_else(|_| "panic".to_owned());
    println!("{line}\t{}", peak_rss_kib());
}

fn describe(name: &str, outcome: Outcome, time: Duration) -> String {
    let time = format_time(time);
    match outcome {
        Outcome::Ok(debug) => {
            let what = match (name, debug) {
                ("duplicate", Some(d)) if d.contains("111") && d.contains("222") => {
                    "accepted, both kept".to_owned()
                }
                ("duplicate", Some(d)) if d.contains("222") => "accepted, last wins".to_owned(),
                ("duplicate", Some(d)) if d.contains("111") => "accepted, first wins".to_owned(),
                ("merge", Some(d)) if d.contains("<<") => {
                    "not applied: `<<` kept as a key".to_owned()
                }
                ("merge", Some(d)) if d.matches("nginx").count() == 2 => "applied".to_owned(),
                (_, Some(d)) => format!("accepted: {}", one_line(&d, 80)),
                (_, None) => "accepted".to_owned(),
            };
            format!("ok\t{time}\t{what}")
        }
        Outcome::Err { message, location } => {
            let at = match location {
                Some((line, column)) => format!("[line {line}, col {column}] "),
                None => "[no location] ".to_owned(),
            };
            format!("err\t{time}\t{at}{}", one_line(&message, 110))
        }
    }
}

fn format_time(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else if ms >= 0.1 {
        format!("{ms:.2} ms")
    } else {
        format!("{:.1} µs", ms * 1000.0)
    }
}

fn one_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default().replace('|', "\\|");
    if line.chars().count() > max {
        format!("{}…", line.chars().take(max).collect::<String>())
    } else {
        line
    }
}

fn peak_rss_kib() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| {
                l.trim_start_matches("VmHWM:")
                    .trim()
                    .trim_end_matches(" kB")
                    .to_owned()
            })
        })
        .unwrap_or_default()
}

/// Runs one case in a child process, under the memory cap and the wall cap.
fn hostile_cell(name: &str, parser: Parser) -> String {
    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {MEMORY_CAP_KIB}; exec \"$0\" case {name} {}",
            parser.name()
        ))
        .arg(&exe)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("child");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if start.elapsed() > WALL_CAP {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    let Some(status) = status else {
        return "**over 10 s** (killed)".to_owned();
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .ok();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .ok();
    if status.success() {
        let fields: Vec<&str> = stdout.trim_end().splitn(4, '\t').collect();
        match fields.as_slice() {
            ["ok", time, what, rss] => format!("{what}, {time} ({} MiB)", mib(rss)),
            ["err", time, what, rss] => format!("refused, {time} ({} MiB): {what}", mib(rss)),
            _ => format!("? {}", one_line(&stdout, 100)),
        }
    } else if stderr.contains("overflowed its stack") {
        format!(
            "**crash: stack overflow** (2 MiB thread stack), after {}",
            format_time(elapsed)
        )
    } else if stderr.contains("memory allocation") {
        format!(
            "**crash: out of memory** (4 GiB cap), after {}",
            format_time(elapsed)
        )
    } else {
        format!(
            "**crash** ({status}), after {}: {}",
            format_time(elapsed),
            one_line(&stderr, 80)
        )
    }
}

fn mib(kib: &str) -> String {
    kib.parse::<f64>()
        .map(|k| format!("{:.0}", k / 1024.0))
        .unwrap_or_else(|_| "?".to_owned())
}

fn run_hostile() {
    println!("## Hostile shapes");
    println!();
    println!("Each cell: one child process per case and parser; the parse runs on a");
    println!("thread with a 2 MiB stack under `ulimit -v` 4 GiB and is killed after");
    println!("10 s. Time is the parse's own (median of up to 5 when short); MiB is");
    println!("the child's peak RSS. Locations are 1-based line and column.");
    println!();
    for (name, what) in CASES {
        println!("### {what} (`{name}`, {} bytes)", case_text(name).len());
        println!();
        for p in PARSERS {
            println!("- {}: {}", p.name(), hostile_cell(name, p));
        }
        println!();
    }
}

// ---------------------------------------------------------------- corpus generation

fn service(i: usize) -> String {
    let name = format!("svc{i:03}");
    let port = 8000 + i;
    let zone = ["eu", "us", "ap"][i % 3];
    format!(
        r#"  {name}:
    image: registry.local/team/{name}:1.{i}.0
    command: ["/app/{name}", "--listen", "0.0.0.0:{port}"]
    environment:
      SERVICE_NAME: {name}
      LOG_LEVEL: info
      DATABASE_URL: postgres://app@db:5432/{name}
      FEATURE_FLAGS: "a,b,c"
      WORKERS: "4"
    ports:
      - "{port}"
      - target: 9{i:03}
        published: {metrics}
        protocol: tcp
    labels:
      com.example.team: team-{team}
      com.example.service: {name}
    restart: unless-stopped
    stop_grace_period: 10s
    healthcheck:
      test: ["CMD", "curl", "-fsS", "http://localhost:{port}/healthz"]
      interval: 10s
      timeout: 2s
      retries: 3
      start_period: 5s
    deploy:
      replicas: {replicas}
      placement:
        constraints:
          - node.labels.zone == {zone}
          - node.platform.os == linux
      restart_policy:
        condition: on-failure
        max_attempts: 5
      update_config:
        parallelism: 1
        delay: 5s
        failure_action: rollback
        monitor: 10s
        order: start-first
    x-convoy:
      probes:
        - http: {{ port: {port}, path: /healthz }}
          interval: 5s
          timeout: 1s
          failure_threshold: 3
"#,
        metrics = 19000 + i,
        team = i % 7,
        replicas = 1 + i % 4,
    )
}

fn compose(n: usize) -> String {
    let mut s = format!(
        "# Generated by bench/yaml-parsers (`cargo run --release -- gen`): {n} services\n\
         # with ports, environment, healthcheck and deploy blocks.\nservices:\n"
    );
    for i in 0..n {
        s.push_str(&service(i));
    }
    s
}

/// The same 10 services, their common keys in anchors applied by merge
/// keys, as Compose files often share settings.
fn compose_merge(n: usize) -> String {
    let mut s = String::from(
        "# Generated by bench/yaml-parsers (`cargo run --release -- gen`): services\n\
         # sharing settings through anchors and merge keys (`<<: *common`).\n\
         x-common: &common\n  restart: unless-stopped\n  stop_grace_period: 10s\n  \
         labels:\n    com.example.team: platform\n\
         x-health: &health\n  interval: 10s\n  timeout: 2s\n  retries: 3\n  start_period: 5s\n\
         x-deploy: &deploy\n  restart_policy:\n    condition: on-failure\n    max_attempts: 5\n  \
         update_config:\n    parallelism: 1\n    delay: 5s\n    failure_action: rollback\n    \
         order: start-first\nservices:\n",
    );
    for i in 0..n {
        let port = 8000 + i;
        s.push_str(&format!(
            "  svc{i:03}:\n    <<: *common\n    image: registry.local/team/svc{i:03}:1.{i}.0\n    \
             environment:\n      SERVICE_NAME: svc{i:03}\n      LOG_LEVEL: info\n    \
             ports:\n      - \"{port}\"\n    healthcheck:\n      <<: *health\n      \
             test: [\"CMD\", \"curl\", \"-fsS\", \"http://localhost:{port}/healthz\"]\n    \
             deploy:\n      <<: *deploy\n      replicas: {}\n",
            1 + i % 4
        ));
    }
    s
}

fn generate() {
    let dir = repo_root().join("bench/yaml-parsers/corpus");
    std::fs::create_dir_all(&dir).expect("corpus dir");
    let files = [
        ("compose-10.yaml", compose(10)),
        ("compose-200.yaml", compose(200)),
        ("compose-10-merge.yaml", compose_merge(10)),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), &text).expect("write");
        println!("{name}: {} bytes", text.len());
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["case", name, parser] => run_case(name, Parser::from_name(parser)),
        ["gen"] => generate(),
        ["corpus"] => run_corpus(),
        ["hostile"] => run_hostile(),
        [] => {
            run_corpus();
            run_hostile();
        }
        _ => eprintln!("usage: yaml-parsers-bench [gen | corpus | hostile]"),
    }
}

//! A real Prometheus for the tests: the Debian package's `prometheus` and
//! `promtool`, found on `PATH` (scripts/test.sh installs them), a server
//! started on a free loopback port with a generated config, its HTTP API, and
//! the exposition-format and PromQL pieces the tests check Convoy against.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::Value;

use crate::cluster::free_port;

/// The repository's `deploy/` folder (Grafana dashboard, alerting rules).
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The path of `name` on `PATH`; fails the test, never skips it, when the
/// Prometheus tools are missing.
pub fn require_tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not on PATH: the Prometheus tests need Debian's `prometheus` \
                 package (`apt-get install prometheus`; scripts/test.sh installs it)"
            )
        })
}

/// Runs `promtool ARGS` with `stdin` fed to it.
pub fn promtool(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(require_tool("promtool"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start promtool {args:?}: {e}"));
    let mut pipe = child.stdin.take().expect("stdin is piped");
    let input = stdin.to_string();
    let writer = thread::spawn(move || {
        let _ = pipe.write_all(input.as_bytes());
    });
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("promtool {args:?}: {e}"));
    let _ = writer.join();
    out
}

/// Fails the test with promtool's own words unless it succeeded.
pub fn assert_promtool_ok(args: &[&str], stdin: &str) -> String {
    let out = promtool(args, stdin);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n{said}",
        args.join(" "),
        out.status
    );
    said
}

// ---- HTTP ------------------------------------------------------------

/// An HTTP answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// `GET path` over HTTP/1.0 (so the answer is never chunked unless a
/// server insists, which is handled too) with extra request headers.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Response> {
    let timeout = Duration::from_secs(10);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer of {addr}{path}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("{addr}{path} answered no HTTP head"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("{addr}{path} answered a bad status line: {head:?}"))?;
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body)?;
    }
    Ok(Response {
        status,
        headers,
        body: String::from_utf8(body).context("the body is not UTF-8")?,
    })
}

fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("truncated chunked body"))?;
        let size = std::str::from_utf8(&raw[..eol])?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("bad chunk size {size:?}"))?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        ensure!(raw.len() >= size + 2, "truncated chunk");
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// Percent-encodes a query-string value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---- the server --------------------------------------------------------

/// A `prometheus` server on a free loopback port, killed when dropped; its
/// log is printed then if the test is failing.
pub struct Prometheus {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Prometheus {
    /// Writes `config` (and `files`, e.g. rule files named in it) into `dir`
    /// and starts Prometheus on them; waits until `/-/ready` answers 200.
    pub fn start(dir: &Path, config: &str, files: &[(&str, &str)]) -> Prometheus {
        let binary = require_tool("prometheus");
        fs::create_dir_all(dir).expect("cannot create the Prometheus dir");
        fs::write(dir.join("prometheus.yml"), config).expect("cannot write prometheus.yml");
        for (name, text) in files {
            fs::write(dir.join(name), text).expect("cannot write a Prometheus file");
        }
        let log = dir.join("prometheus.log");
        let mut last_error = None;
        // A free port can be taken by someone else before Prometheus binds it.
        for _ in 0..3 {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let out = fs::File::create(&log).expect("cannot create prometheus.log");
            let err = out.try_clone().expect("cannot dup a log file");
            let child = Command::new(&binary)
                .arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let mut prom = Prometheus {
                addr,
                dir: dir.to_path_buf(),
                log: log.clone(),
                child: Some(child),
            };
            match prom.wait_ready(Duration::from_secs(60)) {
                Ok(()) => return prom,
                Err(e) => {
                    let text = prom.log_text();
                    if let Some(mut child) = prom.child.take() {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                    if !text.contains("address already in use") {
                        panic!("{e:#}\n---- prometheus log ----\n{text}");
                    }
                    last_error = Some(e);
                }
            }
        }
        panic!("Prometheus found no free port: {last_error:?}");
    }

    fn wait_ready(&mut self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("prometheus exited ({status}) before it was ready");
                }
            }
            if let Ok(r) = get(self.addr, "/-/ready", &[]) {
                if r.status == 200 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("prometheus was not ready within {within:?}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// `GET /api/v1/{path}`; the `data` of a `success` answer.
    pub fn api(&self, path: &str) -> Result<Value> {
        let r = get(self.addr, &format!("/api/v1/{path}"), &[])?;
        let v: Value = serde_json::from_str(&r.body)
            .with_context(|| format!("/api/v1/{path} answered {}: {}", r.status, r.body))?;
        ensure!(
            v["status"] == "success",
            "/api/v1/{path} answered {}: {} {}",
            r.status,
            v["errorType"],
            v["error"]
        );
        Ok(v["data"].clone())
    }

    /// An instant query: every series of the answer, as its labels and value.
    pub fn query(&self, promql: &str) -> Result<Vec<(BTreeMap<String, String>, f64)>> {
        let data = self.api(&format!("query?query={}", urlencode(promql)))?;
        let result = data["result"]
            .as_array()
            .ok_or_else(|| anyhow!("`{promql}` gave no result array: {data}"))?;
        result
            .iter()
            .map(|s| {
                let labels = serde_json::from_value(s["metric"].clone())?;
                let value = s["value"][1]
                    .as_str()
                    .ok_or_else(|| anyhow!("`{promql}` gave a bad sample: {s}"))?
                    .parse()?;
                Ok((labels, value))
            })
            .collect()
    }

    /// The value of a query that must give exactly one series.
    pub fn value(&self, promql: &str) -> Result<f64> {
        let series = self.query(promql)?;
        match series.as_slice() {
            [(_, v)] => Ok(*v),
            _ => bail!("`{promql}` gave {} series: {series:?}", series.len()),
        }
    }

    /// The alerts Prometheus holds now (pending or firing).
    pub fn alerts(&self) -> Result<Vec<Value>> {
        Ok(self.api("alerts")?["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!("---- prometheus log ({}) ----", self.log.display());
            eprintln!("{}", self.log_text());
        }
    }
}

// ---- exposition and PromQL ---------------------------------------------

/// The series names of an exposition (`convoy_events_total`,
/// `convoy_apply_duration_seconds_bucket`, ...: what PromQL selects, not the
/// family names of `# TYPE`) with the label names each carries.
pub fn exposed_series(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..end].to_string()).or_default();
        if line[end..].starts_with('{') {
            labels.extend(label_names(&line[end + 1..]));
        }
    }
    out
}

/// The label names of `a="x",b=~"y"}...` up to the closing brace, skipping
/// quoted values (which may hold `,`, `}` or escaped quotes).
fn label_names(mut s: &str) -> Vec<String> {
    let mut names = Vec::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if s.is_empty() || s.starts_with('}') {
            return names;
        }
        let Some(op) = s.find(['=', '!']) else {
            return names;
        };
        names.push(s[..op].trim().to_string());
        let Some(open) = s.find('"') else {
            return names;
        };
        let mut i = open + 1;
        let bytes = s.as_bytes();
        while i < bytes.len() && bytes[i] != b'"' {
            i += if bytes[i] == b'\\' { 2 } else { 1 };
        }
        s = s.get(i + 1..).unwrap_or("");
    }
}

/// What a PromQL expression reads: the metric names it selects, each with
/// the label names of its `{...}` matchers, and the label names of its
/// `by (...)` / `without (...)` / `on (...)` / `ignoring (...)` clauses.
#[derive(Debug, Default, PartialEq)]
pub struct PromqlRefs {
    pub selectors: Vec<(String, Vec<String>)>,
    pub grouping: Vec<String>,
}

pub fn promql_refs(expr: &str) -> PromqlRefs {
    const GROUPING: [&str; 4] = ["by", "without", "on", "ignoring"];
    let mut refs = PromqlRefs::default();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '[' {
            // A range or subquery duration: `[5m]`.
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j] == ' ' {
                j += 1;
            }
            let next = chars.get(j).copied();
            if GROUPING.contains(&word.as_str()) && next == Some('(') {
                let close = chars[j..].iter().position(|&c| c == ')').map(|p| p + j);
                let close = close.unwrap_or(chars.len());
                let inside: String = chars[j + 1..close].iter().collect();
                refs.grouping.extend(
                    inside
                        .split(',')
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(String::from),
                );
                i = close + 1;
                continue;
            } else if next == Some('(') {
                // A function or aggregation.
            } else if next == Some('{') {
                let rest: String = chars[j + 1..].iter().collect();
                refs.selectors.push((word, label_names(&rest)));
            } else if !is_promql_keyword(&word) && !word.chars().all(|c| c.is_ascii_digit()) {
                refs.selectors.push((word, Vec::new()));
            }
            continue;
        } else if c == '{' {
            // Skip the matchers already read with their metric name.
            while i < chars.len() && chars[i] != '}' {
                if chars[i] == '"' {
                    i += 1;
                    while i < chars.len() && chars[i] != '"' {
                        i += if chars[i] == '\\' { 2 } else { 1 };
                    }
                }
                i += 1;
            }
        } else if c.is_ascii_digit() || c == '.' {
            // A number, possibly `1e3` or a duration such as `5m`.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        i += 1;
    }
    refs
}

fn is_promql_keyword(word: &str) -> bool {
    matches!(
        word,
        "and"
            | "or"
            | "unless"
            | "bool"
            | "offset"
            | "group_left"
            | "group_right"
            | "inf"
            | "Inf"
            | "nan"
            | "NaN"
            | "atan2"
            // Aggregations, which may be followed by `by (...)` before `(`.
            | "sum"
            | "min"
            | "max"
            | "avg"
            | "group"
            | "stddev"
            | "stdvar"
            | "count"
            | "count_values"
            | "bottomk"
            | "topk"
            | "quantile"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promql_refs_finds_selectors_matchers_and_grouping() {
        let refs = promql_refs(
            r#"histogram_quantile(0.99, sum by (le, env) (rate(convoy_x_bucket{a="}", b=~"$env"}[5m]))) or vector(0) > 1e3 and on(node) up"#,
        );
        assert_eq!(
            refs.selectors,
            vec![
                (
                    "convoy_x_bucket".to_string(),
                    vec!["a".to_string(), "b".to_string()]
                ),
                ("up".to_string(), vec![]),
            ]
        );
        assert_eq!(refs.grouping, vec!["le", "env", "node"]);
    }

    #[test]
    fn exposed_series_reads_sample_names_not_families() {
        let text = "# HELP convoy_events Events.\n# TYPE convoy_events counter\n\
                    convoy_events_total{kind=\"a,b\\\"}\"} 1\nconvoy_up 1\n# EOF\n";
        let series = exposed_series(text);
        assert_eq!(
            series.keys().collect::<Vec<_>>(),
            ["convoy_events_total", "convoy_up"]
        );
        assert_eq!(
            series["convoy_events_total"],
            BTreeSet::from(["kind".to_string()])
        );
    }

    #[test]
    fn urlencode_escapes_promql() {
        assert_eq!(
            urlencode(r#"up{job="x"} == 1"#),
            "up%7Bjob%3D%22x%22%7D%20%3D%3D%201"
        );
    }
}

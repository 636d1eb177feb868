//! convoy-testapp: the workload the end-to-end tests deploy. A tiny HTTP/1.1
//! server with no dependencies, linked statically and packed `FROM scratch`
//! into the image `convoy-testapp` (see `scripts/build-test-image.sh`), since
//! no registry can be reached where the tests run.
//!
//! ```text
//! convoy-testapp [--listen ADDR] [--exit-after SECS]
//! convoy-testapp --probe URL
//! convoy-testapp --cat PATH | --write PATH
//! convoy-testapp --version
//!
//! GET  /         200 "hello from HOSTNAME: GREETING"
//! GET  /healthz  200 "ok", or 500 "failing" after POST /fail
//! POST /fail     makes /healthz answer 500
//!
//! `--fail-percent N` (or the variable `FAIL_PERCENT=N`) answers N % of the
//! `GET /` requests with 500 "injected failure", spread evenly (every
//! fifth request at 20), for the proxy's analysis gates.
//! POST /recover  makes /healthz answer 200 again
//! GET  /secret/NAME  200 the content of /run/secrets/NAME, 404 if absent
//! GET  /env/VAR      200 the value of environment variable VAR, 404 if unset
//! ```
//!
//! NAME and VAR are `[A-Za-z0-9_.-]+` (else 400).
//!
//! `--exit-after SECS` exits with code 3 after SECS seconds, for crash tests.
//!
//! `--log-every MS [--log-lines N] [--log-pad BYTES]` writes N lines
//! `tick SEQ from HOSTNAME` (padded with BYTES `x`s) every MS ms, for log
//! tests: to stdout, every tenth (SEQ divisible by 10) to stderr.
//!
//! `--probe URL` is a health check for images without curl: it GETs the
//! `http://` URL, prints the status line (or the error) and exits 0 for a
//! 2xx answer, 1 for anything else, within 2 s. As a Docker healthcheck:
//! `["CMD", "/convoy-testapp", "--probe", "http://127.0.0.1:8080/healthz"]`.
//!
//! `--cat PATH` prints the file (the image has no shell); `--write PATH`
//! tries to write it, printing the error and exiting 1 when it cannot.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::{env, fs, process, thread};

/// Exit code used by `--exit-after`, distinct from Docker's 137/143 so a test
/// can tell a crash from a kill.
const EXIT_AFTER_CODE: i32 = 3;

/// Headers larger than this are refused: the tests never send them.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How long `--probe` may take in all.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, PartialEq)]
struct Args {
    listen: String,
    exit_after: Option<Duration>,
    version: bool,
    /// `--probe URL`: check the URL and exit.
    probe: Option<String>,
    /// `--cat PATH`, `--write PATH`: a file from inside the container.
    cat: Option<String>,
    write: Option<String>,
    /// `--log-every MS`, `--log-lines N`, `--log-pad BYTES`.
    log_every: Option<Duration>,
    log_lines: u32,
    log_pad: usize,
    /// `--fail-percent N`: this share of `GET /` answers 500.
    fail_percent: Option<u32>,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        listen: "0.0.0.0:8080".to_string(),
        exit_after: None,
        version: false,
        probe: None,
        cat: None,
        write: None,
        log_every: None,
        log_lines: 1,
        log_pad: 0,
        fail_percent: None,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--version" | "-V" => parsed.version = true,
            "--probe" => {
                parsed.probe = Some(args.next().ok_or("--probe needs a URL")?);
            }
            "--cat" => parsed.cat = Some(args.next().ok_or("--cat needs a path")?),
            "--write" => parsed.write = Some(args.next().ok_or("--write needs a path")?),
            "--listen" => {
                parsed.listen = args.next().ok_or("--listen needs an address")?;
            }
            "--exit-after" => {
                let value = args.next().ok_or("--exit-after needs seconds")?;
                let secs: f64 = value
                    .parse()
                    .map_err(|_| format!("--exit-after: `{value}` is not a number of seconds"))?;
                if !(secs.is_finite() && secs >= 0.0) {
                    return Err(format!(
                        "--exit-after: `{value}` is not a number of seconds"
                    ));
                }
                parsed.exit_after = Some(Duration::from_secs_f64(secs));
            }
            "--fail-percent" => {
                let value = args.next().ok_or("--fail-percent needs a number")?;
                parsed.fail_percent = Some(parse_percent(&value)?);
            }
            "--log-every" => {
                let value = args.next().ok_or("--log-every needs milliseconds")?;
                let ms: u64 = value
                    .parse()
                    .map_err(|_| format!("--log-every: `{value}` is not milliseconds"))?;
                parsed.log_every = Some(Duration::from_millis(ms.max(1)));
            }
            "--log-lines" => {
                let value = args.next().ok_or("--log-lines needs a number")?;
                parsed.log_lines = value
                    .parse()
                    .map_err(|_| format!("--log-lines: `{value}` is not a number"))?;
            }
            "--log-pad" => {
                let value = args.next().ok_or("--log-pad needs a number of bytes")?;
                parsed.log_pad = value
                    .parse()
                    .map_err(|_| format!("--log-pad: `{value}` is not a number"))?;
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(parsed)
}

fn hostname() -> String {
    // Docker sets HOSTNAME; /proc covers `docker run --hostname`-less cases.
    env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

#[derive(Debug, PartialEq)]
struct Request {
    method: String,
    path: String,
    content_length: usize,
}

fn parse_head(head: &str) -> Option<Request> {
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let path = request_line.next()?.to_string();
    let mut content_length = 0;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().ok()?;
            }
        }
    }
    Some(Request {
        method,
        path,
        content_length,
    })
}

/// Splits `http://HOST[:PORT][/PATH]` into the address to dial, the Host
/// header and the path.
fn parse_url(url: &str) -> Result<(SocketAddr, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{url}` is not an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    let with_port = if authority.ends_with(']') || !authority.contains(':') {
        format!("{authority}:80")
    } else {
        authority.to_string()
    };
    // Numbers first: a FROM scratch image has no resolver to ask.
    let addr = match with_port.parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => match with_port.rsplit_once(':') {
            Some(("localhost", port)) => {
                let port = port
                    .parse()
                    .map_err(|_| format!("`{url}` has an invalid port"))?;
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)
            }
            _ => with_port
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve `{authority}`: {e}"))?
                .next()
                .ok_or_else(|| format!("cannot resolve `{authority}`"))?,
        },
    };
    Ok((addr, authority.to_string(), path.to_string()))
}

/// GETs `url` within `timeout`: the status line when the answer is 2xx,
/// else the status line or the error.
fn probe(url: &str, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("GET {url}: no answer within {timeout:?}"))
    };
    let (addr, host, path) = parse_url(url)?;
    let fail = |e: std::io::Error| {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            format!("GET {url}: no answer within {timeout:?}")
        } else {
            format!("GET {url}: {e}")
        }
    };
    let mut stream = TcpStream::connect_timeout(&addr, left()?).map_err(fail)?;
    stream.set_write_timeout(Some(left()?)).map_err(fail)?;
    // One write: a server that answers after its first read and closes
    // must not see (and reset) a second segment of the request.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: convoy-testapp\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(fail)?;
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.contains(&b'\n') && head.len() < MAX_HEAD_BYTES {
        stream.set_read_timeout(Some(left()?)).map_err(fail)?;
        match stream.read(&mut chunk).map_err(fail)? {
            0 => break,
            n => head.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or("").trim().to_string();
    let code = status_line
        .strip_prefix("HTTP/")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok());
    match code {
        Some(200..=299) => Ok(status_line),
        Some(_) => Err(status_line),
        None if status_line.is_empty() => Err(format!("GET {url}: no answer")),
        None => Err(format!("GET {url}: not an HTTP answer: {status_line}")),
    }
}

/// `0`-`100`.
fn parse_percent(value: &str) -> Result<u32, String> {
    value
        .parse::<u32>()
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| format!("--fail-percent: `{value}` is not a percentage (0-100)"))
}

/// The share of `GET /` answered with 500 (`--fail-percent`).
static FAIL_PERCENT: AtomicU32 = AtomicU32::new(0);
/// `GET /` requests so far.
static ROOT_REQUESTS: AtomicU64 = AtomicU64::new(0);

/// Whether the `n`th request (from 1) fails at `percent`: evenly spread,
/// exactly `percent` of every 100.
fn injected_failure(n: u64, percent: u32) -> bool {
    (n * u64::from(percent)) % 100 < u64::from(percent)
}

/// What the app answers: status code, reason, body.
fn route(req: &Request, failing: &AtomicBool) -> (u16, &'static str, String) {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/")
            if injected_failure(
                ROOT_REQUESTS.fetch_add(1, Ordering::Relaxed) + 1,
                FAIL_PERCENT.load(Ordering::Relaxed),
            ) =>
        {
            (
                500,
                "Internal Server Error",
                "injected failure\n".to_string(),
            )
        }
        ("GET", "/") => {
            let greeting = env::var("GREETING").unwrap_or_else(|_| "hello".to_string());
            (
                200,
                "OK",
                format!("hello from {}: {greeting}\n", hostname()),
            )
        }
        ("GET", "/healthz") if failing.load(Ordering::SeqCst) => {
            (500, "Internal Server Error", "failing\n".to_string())
        }
        ("GET", "/healthz") => (200, "OK", "ok\n".to_string()),
        ("POST", "/fail") => {
            failing.store(true, Ordering::SeqCst);
            (200, "OK", "healthz now fails\n".to_string())
        }
        ("POST", "/recover") => {
            failing.store(false, Ordering::SeqCst);
            (200, "OK", "healthz now ok\n".to_string())
        }
        ("GET", path) if path.starts_with("/secret/") => {
            secret_file(Path::new(SECRETS_DIR), &path["/secret/".len()..])
        }
        ("GET", path) if path.starts_with("/env/") => env_var(&path["/env/".len()..]),
        (_, "/" | "/healthz" | "/fail" | "/recover") => (
            405,
            "Method Not Allowed",
            "method not allowed\n".to_string(),
        ),
        _ => (404, "Not Found", "not found\n".to_string()),
    }
}

/// Where Compose and Convoy put a container's secrets.
const SECRETS_DIR: &str = "/run/secrets";

/// `[A-Za-z0-9_.-]+`, not `.` or `..`: one file or variable name.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `GET /secret/NAME`: the file `dir/NAME`.
fn secret_file(dir: &Path, name: &str) -> (u16, &'static str, String) {
    if !plain_name(name) {
        return (400, "Bad Request", "bad secret name\n".to_string());
    }
    match std::fs::read(dir.join(name)) {
        Ok(bytes) => (200, "OK", String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            (404, "Not Found", "no such secret\n".to_string())
        }
        Err(e) => (500, "Internal Server Error", format!("{e}\n")),
    }
}

/// `GET /env/VAR`: the variable's value.
fn env_var(name: &str) -> (u16, &'static str, String) {
    if !plain_name(name) {
        return (400, "Bad Request", "bad variable name\n".to_string());
    }
    match env::var_os(name) {
        Some(value) => (200, "OK", value.to_string_lossy().into_owned()),
        None => (404, "Not Found", "no such variable\n".to_string()),
    }
}

fn serve(stream: TcpStream, failing: &AtomicBool) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        head.push_str(line.trim_end_matches(['\r', '\n']));
        head.push_str("\r\n");
        if head.len() > MAX_HEAD_BYTES {
            break;
        }
    }
    let (code, reason, body) = match parse_head(&head) {
        Some(req) => {
            // Drain the body so the client is not reset mid-write.
            let mut body = vec![0; req.content_length.min(MAX_HEAD_BYTES)];
            reader.read_exact(&mut body)?;
            route(&req, failing)
        }
        None => (400, "Bad Request", "bad request\n".to_string()),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn main() {
    let args = match parse_args(env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("convoy-testapp: {e}");
            process::exit(2);
        }
    };
    if args.version {
        println!("convoy-testapp {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    if let Some(path) = &args.cat {
        match fs::read(path) {
            Ok(bytes) => {
                let _ = std::io::stdout().write_all(&bytes);
                return;
            }
            Err(e) => {
                eprintln!("convoy-testapp: {path}: {e}");
                process::exit(1);
            }
        }
    }
    if let Some(path) = &args.write {
        match fs::write(path, b"written by convoy-testapp\n") {
            Ok(()) => return,
            Err(e) => {
                eprintln!("convoy-testapp: {path}: {e}");
                process::exit(1);
            }
        }
    }
    if let Some(url) = &args.probe {
        // Docker keeps what a healthcheck prints: one line either way.
        match probe(url, PROBE_TIMEOUT) {
            Ok(status) => {
                println!("{status}");
                return;
            }
            Err(why) => {
                println!("{why}");
                process::exit(1);
            }
        }
    }
    let fail_percent = match args.fail_percent {
        Some(p) => p,
        None => match env::var("FAIL_PERCENT") {
            Ok(v) => parse_percent(&v).unwrap_or_else(|e| {
                eprintln!("convoy-testapp: FAIL_PERCENT: {e}");
                process::exit(2);
            }),
            Err(_) => 0,
        },
    };
    FAIL_PERCENT.store(fail_percent, Ordering::Relaxed);
    let listener = match TcpListener::bind(&args.listen) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("convoy-testapp: cannot listen on {}: {e}", args.listen);
            process::exit(1);
        }
    };
    println!("convoy-testapp listening on {}", args.listen);
    if let Some(after) = args.exit_after {
        thread::spawn(move || {
            thread::sleep(after);
            println!("convoy-testapp: exiting with code {EXIT_AFTER_CODE} as asked");
            process::exit(EXIT_AFTER_CODE);
        });
    }
    if let Some(every) = args.log_every {
        let (lines, pad) = (args.log_lines, "x".repeat(args.log_pad));
        thread::spawn(move || {
            let host = hostname();
            let mut seq = 0u64;
            loop {
                for _ in 0..lines {
                    seq += 1;
                    let line = format!(
                        "tick {seq} from {host}{}{pad}",
                        if pad.is_empty() { "" } else { " " }
                    );
                    if seq.is_multiple_of(10) {
                        eprintln!("{line}");
                    } else {
                        println!("{line}");
                    }
                }
                thread::sleep(every);
            }
        });
    }
    let failing = Arc::new(AtomicBool::new(false));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let failing = Arc::clone(&failing);
        thread::spawn(move || {
            if let Err(e) = serve(stream, &failing) {
                eprintln!("convoy-testapp: connection: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn injected_failures_are_the_share_asked_evenly_spread() {
        let failed = |p| (1..=100).filter(|n| injected_failure(*n, p)).count();
        assert_eq!(failed(20), 20);
        assert_eq!(failed(0), 0);
        assert_eq!(failed(100), 100);
        assert_eq!(failed(7), 7);
        // Every fifth at 20 %: never two in a row.
        assert!(!(1..100).any(|n| injected_failure(n, 20) && injected_failure(n + 1, 20)));
        assert_eq!(
            args(&["--fail-percent", "20"]).unwrap().fail_percent,
            Some(20)
        );
        assert!(args(&["--fail-percent", "101"]).is_err());
    }

    #[test]
    fn arguments_default_to_port_8080_and_no_exit() {
        let parsed = args(&[]).unwrap();
        assert_eq!(parsed.listen, "0.0.0.0:8080");
        assert_eq!(parsed.exit_after, None);
        assert!(!parsed.version);
    }

    #[test]
    fn exit_after_accepts_fractions_and_refuses_words() {
        let parsed = args(&["--listen", "127.0.0.1:1", "--exit-after", "0.5"]).unwrap();
        assert_eq!(parsed.listen, "127.0.0.1:1");
        assert_eq!(parsed.exit_after, Some(Duration::from_millis(500)));
        assert!(args(&["--exit-after", "soon"]).is_err());
        assert!(args(&["--exit-after", "-1"]).is_err());
        assert!(args(&["--bogus"]).is_err());
    }

    #[test]
    fn healthz_fails_after_post_fail_and_recovers() {
        let failing = AtomicBool::new(false);
        let get = |path: &str| Request {
            method: "GET".into(),
            path: path.into(),
            content_length: 0,
        };
        let post = |path: &str| Request {
            method: "POST".into(),
            path: path.into(),
            content_length: 0,
        };
        assert_eq!(route(&get("/healthz"), &failing).0, 200);
        assert_eq!(route(&post("/fail"), &failing).0, 200);
        assert_eq!(route(&get("/healthz"), &failing).0, 500);
        assert_eq!(route(&post("/recover"), &failing).0, 200);
        assert_eq!(route(&get("/healthz"), &failing).0, 200);
        assert_eq!(route(&get("/nope"), &failing).0, 404);
    }

    #[test]
    fn secret_route_serves_a_file_of_run_secrets_by_plain_name() {
        let dir = env::temp_dir().join(format!("convoy-testapp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("db_password"), "s3cret").unwrap();
        assert_eq!(
            secret_file(&dir, "db_password"),
            (200, "OK", "s3cret".to_string())
        );
        assert_eq!(secret_file(&dir, "nope").0, 404);
        assert_eq!(secret_file(&dir, "..").0, 400);
        assert_eq!(secret_file(&dir, "a/b").0, 400);
        assert_eq!(secret_file(&dir, "").0, 400);
        std::fs::remove_dir_all(&dir).unwrap();
        let failing = AtomicBool::new(false);
        let get = |path: &str| Request {
            method: "GET".into(),
            path: path.into(),
            content_length: 0,
        };
        assert_eq!(route(&get("/secret/../etc/passwd"), &failing).0, 400);
        assert_eq!(route(&get("/secret/surely-not-here-x"), &failing).0, 404);
    }

    #[test]
    fn env_route_serves_a_set_variable_and_404s_an_unset_one() {
        let failing = AtomicBool::new(false);
        let get = |path: &str| Request {
            method: "GET".into(),
            path: path.into(),
            content_length: 0,
        };
        let path = env::var("PATH").unwrap();
        assert_eq!(route(&get("/env/PATH"), &failing), (200, "OK", path));
        assert_eq!(
            route(&get("/env/CONVOY_TESTAPP_SURELY_UNSET"), &failing).0,
            404
        );
        assert_eq!(route(&get("/env/A=B"), &failing).0, 400);
    }

    #[test]
    fn probe_url_gives_address_host_and_path() {
        let (addr, host, path) = parse_url("http://127.0.0.1:8080/healthz").unwrap();
        assert_eq!(addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            (host.as_str(), path.as_str()),
            ("127.0.0.1:8080", "/healthz")
        );
        let (addr, _, path) = parse_url("http://localhost").unwrap();
        assert_eq!(addr, "127.0.0.1:80".parse().unwrap());
        assert_eq!(path, "/");
        let (addr, _, _) = parse_url("http://[::1]:81/x").unwrap();
        assert_eq!(addr, "[::1]:81".parse().unwrap());
        assert!(parse_url("https://x/").is_err());
        assert!(parse_url("http:///x").is_err());
        assert_eq!(
            args(&["--probe", "http://127.0.0.1:1/"])
                .unwrap()
                .probe
                .as_deref(),
            Some("http://127.0.0.1:1/")
        );
        assert!(args(&["--probe"]).is_err());
    }

    /// Serves one canned answer per connection, or none at all (hangs).
    fn canned(answer: Option<&'static str>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf);
                match answer {
                    Some(text) => {
                        let _ = stream.write_all(text.as_bytes());
                    }
                    None => thread::sleep(Duration::from_secs(30)),
                }
            }
        });
        port
    }

    #[test]
    fn probe_passes_on_2xx_and_fails_on_500_or_no_server() {
        let ok = canned(Some("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"));
        assert_eq!(
            probe(&format!("http://127.0.0.1:{ok}/healthz"), PROBE_TIMEOUT),
            Ok("HTTP/1.1 200 OK".to_string())
        );
        let failing = canned(Some("HTTP/1.1 500 Internal Server Error\r\n\r\n"));
        assert_eq!(
            probe(
                &format!("http://127.0.0.1:{failing}/healthz"),
                PROBE_TIMEOUT
            ),
            Err("HTTP/1.1 500 Internal Server Error".to_string())
        );
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = probe(&format!("http://127.0.0.1:{closed}/"), PROBE_TIMEOUT).unwrap_err();
        assert!(
            err.starts_with(&format!("GET http://127.0.0.1:{closed}/: ")),
            "{err}"
        );
    }

    #[test]
    fn probe_of_a_server_that_never_answers_gives_up_in_time() {
        let port = canned(None);
        let began = Instant::now();
        let err = probe(
            &format!("http://127.0.0.1:{port}/"),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(err.contains("no answer within 300ms"), "{err}");
        assert!(began.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn request_head_is_parsed_with_its_content_length() {
        let req = parse_head("POST /fail HTTP/1.1\r\nHost: x\r\ncontent-length: 4\r\n").unwrap();
        assert_eq!(
            req,
            Request {
                method: "POST".into(),
                path: "/fail".into(),
                content_length: 4
            }
        );
        assert_eq!(parse_head(""), None);
    }
}

//! convoy-testapp: the workload the end-to-end tests deploy. A tiny HTTP/1.1
//! server with no dependencies, linked statically and packed `FROM scratch`
//! into the image `convoy-testapp` (see `scripts/build-test-image.sh`), since
//! no registry can be reached where the tests run.
//!
//! ```text
//! convoy-testapp [--listen ADDR] [--exit-after SECS]
//! convoy-testapp --version
//!
//! GET  /         200 "hello from HOSTNAME: GREETING"
//! GET  /healthz  200 "ok", or 500 "failing" after POST /fail
//! POST /fail     makes /healthz answer 500
//! POST /recover  makes /healthz answer 200 again
//! ```
//!
//! `--exit-after SECS` exits with code 3 after SECS seconds, for crash tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use std::{env, fs, process, thread};

/// Exit code used by `--exit-after`, distinct from Docker's 137/143 so a test
/// can tell a crash from a kill.
const EXIT_AFTER_CODE: i32 = 3;

/// Headers larger than this are refused: the tests never send them.
const MAX_HEAD_BYTES: usize = 16 * 1024;

#[derive(Debug, PartialEq)]
struct Args {
    listen: String,
    exit_after: Option<Duration>,
    version: bool,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        listen: "0.0.0.0:8080".to_string(),
        exit_after: None,
        version: false,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--version" | "-V" => parsed.version = true,
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

/// What the app answers: status code, reason, body.
fn route(req: &Request, failing: &AtomicBool) -> (u16, &'static str, String) {
    match (req.method.as_str(), req.path.as_str()) {
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
        (_, "/" | "/healthz" | "/fail" | "/recover") => (
            405,
            "Method Not Allowed",
            "method not allowed\n".to_string(),
        ),
        _ => (404, "Not Found", "not found\n".to_string()),
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

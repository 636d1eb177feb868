//! A minimal HTTP/1.1 client, enough to talk to convoy-testapp.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

/// Sends `METHOD PATH` to `addr` and returns the status code and body.
pub fn request(addr: SocketAddr, method: &str, path: &str) -> Result<(u16, String)> {
    request_as(addr, method, path, None, &[])
}

/// `GET path` with one more header.
pub fn get_with_header(
    addr: SocketAddr,
    path: &str,
    (name, value): (&str, &str),
) -> Result<(u16, String)> {
    request_as(addr, "GET", path, None, &[(name, value)])
}

/// `GET path` with `Authorization: Bearer token` (the coordinator's
/// dashboard API and `/metrics`).
pub fn get_with_token(addr: SocketAddr, path: &str, token: &str) -> Result<(u16, String)> {
    request_as(addr, "GET", path, Some(token), &[])
}

fn request_as(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<(u16, String)> {
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    let mut auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    for (name, value) in headers {
        auth.push_str(&format!("{name}: {value}\r\n"));
    }
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    stream
        .read_to_string(&mut raw)
        .with_context(|| format!("reading the answer of {addr}"))?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("{addr} answered no HTTP head: {raw:?}"))?;
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("{addr} answered a bad status line: {head:?}"))?;
    Ok((code, body.to_string()))
}

/// `GET path`.
pub fn get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    request(addr, "GET", path)
}

/// `GET path` with a token, read as a stream (server-sent events) until
/// `needle` appears in what came, or `within` passes: what came.
pub fn read_stream_until(
    addr: SocketAddr,
    path: &str,
    token: &str,
    needle: &str,
    within: Duration,
) -> Result<String> {
    let deadline = std::time::Instant::now() + within;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    )?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e).with_context(|| format!("reading the stream of {addr}")),
        }
        if String::from_utf8_lossy(&seen).contains(needle) {
            return Ok(String::from_utf8_lossy(&seen).into_owned());
        }
    }
    Err(anyhow!(
        "`{needle}` did not come within {within:?} from {addr}{path}: {}",
        String::from_utf8_lossy(&seen)
    ))
}

//! The HTTP probe: one GET over a connection of its own (hyper's HTTP/1
//! client, plain HTTP), judged by its status; the answer's status line and
//! the start of its body are the probe's output.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{ACCEPT, CONNECTION, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::runtime::MAX_OUTPUT;

/// What came back: status, reason phrase and the start of the body.
struct Answer {
    status: u16,
    reason: String,
    body: String,
}

/// GETs `path` from `target`; passes on `expect_status`, or on any 2xx or
/// 3xx when that is 0. The caller bounds it with the probe's timeout.
pub(super) async fn http_get(target: SocketAddr, path: &str, expect_status: u16) -> (bool, String) {
    let url = format!("http://{target}{path}");
    let answer = match get(target, path).await {
        Ok(answer) => answer,
        Err(e) => return (false, format!("GET {url}: {e}")),
    };
    let passed = if expect_status == 0 {
        (200..400).contains(&answer.status)
    } else {
        answer.status == expect_status
    };
    let mut output = format!("GET {url}: HTTP {}", answer.status);
    if !answer.reason.is_empty() {
        output.push(' ');
        output.push_str(&answer.reason);
    }
    if !answer.body.is_empty() {
        output.push_str(": ");
        output.push_str(&answer.body);
    }
    if !passed && expect_status != 0 {
        output.push_str(&format!(" (expected {expect_status})"));
    }
    (passed, output)
}

async fn get(target: SocketAddr, path: &str) -> Result<Answer, String> {
    let path = if path.is_empty() { "/" } else { path };
    let request = Request::get(path)
        .header(HOST, target.to_string())
        .header(
            USER_AGENT,
            concat!("convoy-agent/", env!("CARGO_PKG_VERSION")),
        )
        .header(ACCEPT, "*/*")
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("invalid path `{path}`: {e}"))?;
    let stream = TcpStream::connect(target)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| describe(&e))?;
    // The connection does the I/O; it ends (and closes) with this probe.
    let driver = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| describe(&e))?;
    let status = response.status();
    let reason = match response.extensions().get::<hyper::ext::ReasonPhrase>() {
        Some(reason) => String::from_utf8_lossy(reason.as_bytes()).into_owned(),
        None => status.canonical_reason().unwrap_or_default().to_string(),
    };
    // As much of the body as the output shows, no more.
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while bytes.len() < MAX_OUTPUT {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
            Some(Err(e)) => return Err(describe(&e)),
            None => break,
        }
    }
    drop(driver);
    bytes.truncate(MAX_OUTPUT);
    let body = String::from_utf8_lossy(&bytes)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Answer {
        status: status.as_u16(),
        reason,
        body,
    })
}

/// hyper's error in the probe's words.
fn describe(e: &hyper::Error) -> String {
    if e.is_parse() {
        "the answer is not HTTP".to_string()
    } else if e.is_incomplete_message() {
        "the connection closed before a complete answer".to_string()
    } else {
        crate::error_chain(e)
    }
}

/// Aborts the task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

//! Dialing a coordinator over mTLS, how a failed dial or stream reads
//! (refused certificate, untrusted coordinator, unreachable), and the
//! pause before the next address or round of addresses.

use super::*;

pub(super) fn stream_error(addr: &str, reason: &str) -> SessionError {
    SessionError::Stream {
        addr: addr.to_string(),
        reason: reason.to_string(),
    }
}
/// Dials `addr` (`host:port`, or a full `https://` URL) with the agent's
/// certificate, verifying the coordinator's name.
pub(crate) async fn connect(addr: &str, pki: &Pki) -> Result<Channel, SessionError> {
    let url = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("https://{addr}")
    };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .identity(Identity::from_pem(&pki.cert_pem, &pki.key_pem))
        .domain_name(COORDINATOR_SERVER_NAME);
    let address_error = |reason: String| SessionError::Address {
        addr: addr.to_string(),
        reason,
    };
    let endpoint = Endpoint::from_shared(url)
        .map_err(|e| address_error(e.to_string()))?
        .tls_config(tls)
        .map_err(|e| address_error(error_chain(&e)))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    match tokio::time::timeout(CONNECT_TIMEOUT * 2, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => Err(classify_text(addr, error_chain(&e))),
        Err(_) => Err(SessionError::Unreachable {
            addr: addr.to_string(),
            reason: format!("no connection within {}s", (CONNECT_TIMEOUT * 2).as_secs()),
        }),
    }
}

pub(super) fn classify(addr: &str, status: &tonic::Status) -> SessionError {
    let mut text = format!("{}: {}", code_name(status.code()), status.message());
    if let Some(source) = std::error::Error::source(status) {
        let chain = error_chain(source);
        // The source often repeats the message.
        let chain = chain
            .strip_prefix(status.message())
            .map(|rest| rest.trim_start_matches(": "))
            .unwrap_or(&chain);
        if !chain.is_empty() {
            text.push_str(": ");
            text.push_str(chain);
        }
    }
    classify_text(addr, text)
}

/// Tells a refused TLS handshake from an unreachable coordinator from any
/// other failure, by what the error chain says.
pub(super) fn classify_text(addr: &str, reason: String) -> SessionError {
    let lower = reason.to_lowercase();
    let addr = addr.to_string();
    if lower.contains("invalid peer certificate") {
        SessionError::CoordinatorNotTrusted { addr, reason }
    } else if lower.contains("alert")
        || lower.contains("certificate")
        || lower.contains("handshake")
    {
        SessionError::CertificateRefused { addr, reason }
    } else if lower.contains("connect")
        || lower.contains("refused")
        || lower.contains("unavailable")
        || lower.contains("dns")
        || lower.contains("timed out")
    {
        SessionError::Unreachable { addr, reason }
    } else {
        SessionError::Stream { addr, reason }
    }
}

/// A connection that closes between a completed handshake and the first
/// answer: with TLS 1.3 the server checks the client certificate after the
/// client's side of the handshake is done, and its alert can be lost.
pub(super) fn refused_or(error: SessionError) -> SessionError {
    match error {
        SessionError::Unreachable { addr, reason } | SessionError::Stream { addr, reason }
            if ["closed", "cancel", "reset", "broken pipe"]
                .iter()
                .any(|w| reason.to_lowercase().contains(w)) =>
        {
            SessionError::CertificateRefused {
                addr,
                reason: format!("it closed the connection right after the TLS handshake: {reason}"),
            }
        }
        other => other,
    }
}

fn code_name(code: tonic::Code) -> String {
    format!("{code:?}").to_lowercase()
}

/// The pause before the next attempt after `failures` (1, 2, ...) failed
/// ones in a row, taking turns over `addresses` coordinators: a short hop
/// ([`NEXT_COORDINATOR`]) while the round of addresses is not over, and the
/// backoff, exponential from 1 s to 30 s, once each has failed (with one
/// address, every failure ends a round). `jitter` (0.5 to 1) scales either.
pub(super) fn next_delay(addresses: usize, failures: u32, jitter: f64) -> Duration {
    let jitter = jitter.clamp(0.5, 1.0);
    let addresses = u32::try_from(addresses.max(1)).unwrap_or(u32::MAX);
    if !failures.is_multiple_of(addresses) {
        return NEXT_COORDINATOR.mul_f64(jitter);
    }
    let rounds = failures / addresses;
    let base = RECONNECT_START
        .checked_mul(
            1u32.checked_shl(rounds.saturating_sub(1))
                .unwrap_or(u32::MAX),
        )
        .unwrap_or(RECONNECT_MAX)
        .min(RECONNECT_MAX);
    base.mul_f64(jitter)
}

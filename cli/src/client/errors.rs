//! Failures worded for the user: the server's messages pass through, and
//! what went wrong on this side says what, where, and in plain words.

use std::error::Error as StdError;

use tonic::{Code, Status};

/// How a standby coordinator's refusals begin: it serves nothing until it
/// leads, and says so with `UNAVAILABLE` and this prefix.
const STANDBY_PREFIX: &str = "standby:";

/// A standby's refusal: another coordinator leads. Only the server writes
/// such a message (a failure on this side carries a source error instead).
pub(super) fn is_standby(status: &Status) -> bool {
    status.code() == Code::Unavailable
        && status.source().is_none()
        && status.message().trim_start().starts_with(STANDBY_PREFIX)
}

/// A TLS failure that every coordinator of the cluster would cause alike:
/// the certificate it presents is not trusted (wrong CA, wrong name), or it
/// refuses ours. Trying the next address would only hide it.
pub(super) fn is_trust_failure(root_cause: &str) -> bool {
    root_cause.to_lowercase().contains("certificate")
}

pub(super) fn unreachable(address: &str, reason: &str) -> String {
    format!("cannot reach the coordinator at {address}: {reason}")
}

/// The server's messages are written for users, so they pass through; only
/// failures raised on this side (they carry a source error) and a refused
/// token get words of their own.
pub(super) fn describe_status(status: &Status, address: &str) -> String {
    let message = status.message().trim();
    let message = if message.is_empty() {
        status.code().description()
    } else {
        message
    };
    if let Some(source) = status.source() {
        if matches!(status.code(), Code::Unavailable | Code::Unknown) {
            return unreachable(address, &root_cause(source));
        }
    }
    match status.code() {
        Code::Unauthenticated => format!("the coordinator refused the token: {message}"),
        Code::DeadlineExceeded | Code::Cancelled => {
            format!("the coordinator at {address} did not answer in time: {message}")
        }
        _ => message.to_owned(),
    }
}

/// The innermost error, worded like the rest of our messages
/// ("connection refused", not "Connection refused (os error 111)").
pub(super) fn root_cause(err: &(dyn StdError + 'static)) -> String {
    let mut inner = err;
    while let Some(source) = inner.source() {
        inner = source;
    }
    let text = inner.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_owned(),
        _ => text,
    };
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_ascii_uppercase() && second.is_lowercase() => {
            first.to_ascii_lowercase().to_string() + &text[1..]
        }
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_error_numbers_are_dropped_from_root_causes() {
        let err = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let err = std::io::Error::new(err.kind(), "Connection refused (os error 111)");
        assert_eq!(root_cause(&err), "connection refused");
        let err = std::io::Error::other("TLS handshake failed");
        assert_eq!(root_cause(&err), "TLS handshake failed");
    }

    #[test]
    fn only_a_servers_unavailable_standby_answer_is_a_standby() {
        assert!(is_standby(&Status::unavailable(
            "standby: the leader is coordinator c2"
        )));
        assert!(!is_standby(&Status::unavailable("shutting down")));
        assert!(!is_standby(&Status::failed_precondition("standby: x")));
        // A failure on this side, whatever its words.
        let mut local = Status::unavailable("standby: x");
        local.set_source(std::sync::Arc::new(std::io::Error::other("reset")));
        assert!(!is_standby(&local));
    }

    #[test]
    fn certificate_failures_are_trust_failures_and_others_are_not() {
        assert!(is_trust_failure("invalid peer certificate: UnknownIssuer"));
        assert!(is_trust_failure(
            "received fatal alert: CertificateRequired"
        ));
        assert!(!is_trust_failure("connection refused"));
        assert!(!is_trust_failure("tls handshake eof"));
    }

    #[test]
    fn server_messages_pass_through_and_a_refused_token_is_named() {
        let addr = "https://h:1";
        let status = Status::invalid_argument("spec.yaml:3:5: unknown field `imag`");
        assert_eq!(
            describe_status(&status, addr),
            "spec.yaml:3:5: unknown field `imag`"
        );
        let status = Status::unauthenticated("invalid token");
        assert_eq!(
            describe_status(&status, addr),
            "the coordinator refused the token: invalid token"
        );
        let status = Status::not_found("");
        assert_eq!(
            describe_status(&status, addr),
            "Some requested entity was not found"
        );
    }
}

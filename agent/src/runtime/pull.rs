//! Why an image pull failed, read from Docker's own words: the registry
//! wants credentials (or refused them), has no such image, or cannot be
//! reached. The reason a user sees names the image, the node and what to
//! do (`convoy registry login`, push the image, check the network).

/// The kinds of pull failure a user acts on differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullFailure {
    /// The registry wants credentials, or refused the ones sent.
    Auth,
    /// No such repository, tag or manifest.
    NotFound,
    /// No connection: refused, no such host, timeout, TLS.
    Unreachable,
    Other,
}

/// Reads Docker's pull error. Connection faults are looked for first
/// (their texts can hold a URL with any word in it), then authentication,
/// then absence: Docker Hub answers `pull access denied … repository does
/// not exist or may require 'docker login'` for both a private and a
/// missing repository, and logging in is the next step for both.
pub fn classify(message: &str) -> PullFailure {
    let m = message.to_ascii_lowercase();
    const UNREACHABLE: &[&str] = &[
        "connection refused",
        "no such host",
        "i/o timeout",
        "timeout exceeded",
        "client.timeout",
        "tls handshake timeout",
        "context deadline exceeded",
        "network is unreachable",
        "no route to host",
        "connection reset",
        "x509:",
        "tls:",
        "server gave http response to https client",
        "did not finish within",
    ];
    const AUTH: &[&str] = &[
        "no basic auth credentials",
        "unauthorized",
        "authentication required",
        "denied",
        "incorrect username or password",
    ];
    const NOT_FOUND: &[&str] = &[
        "manifest unknown",
        "name unknown",
        "not found",
        "repository does not exist",
    ];
    let any = |words: &[&str]| words.iter().any(|w| m.contains(w));
    if any(UNREACHABLE) {
        PullFailure::Unreachable
    } else if any(AUTH) {
        PullFailure::Auth
    } else if any(NOT_FOUND) {
        PullFailure::NotFound
    } else {
        PullFailure::Other
    }
}

/// What failed and what to do, after `pulling IMAGE on node NODE failed: `.
/// `username` is the login sent, if any.
pub fn explain(kind: PullFailure, registry: &str, username: Option<&str>, detail: &str) -> String {
    match (kind, username) {
        (PullFailure::Auth, None) => format!(
            "authentication required by {registry} (convoy registry login {registry}): {detail}"
        ),
        (PullFailure::Auth, Some(user)) => format!(
            "{registry} refused the login of `{user}` (convoy registry login {registry} with the \
             right credentials): {detail}"
        ),
        (PullFailure::NotFound, _) => format!(
            "not found in {registry}: push the image there or fix its name and tag ({detail})"
        ),
        (PullFailure::Unreachable, _) => {
            format!("registry {registry} unreachable from the node: {detail}")
        }
        (PullFailure::Other, _) => detail.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Docker Engine's own messages (20.10 to 27), as the pull answers them.
    #[test]
    fn docker_pull_errors_are_classified_by_their_real_texts() {
        let cases = [
            (
                r#"Head "https://127.0.0.1:41234/v2/convoy/app/manifests/t1": no basic auth credentials"#,
                PullFailure::Auth,
            ),
            (
                r#"Head "https://127.0.0.1:41234/v2/convoy/app/manifests/t1": unauthorized: authentication required"#,
                PullFailure::Auth,
            ),
            (
                "pull access denied for convoy-nope, repository does not exist or may require \
                 'docker login': denied: requested access to the resource is denied",
                PullFailure::Auth,
            ),
            (
                "Get \"https://ghcr.io/v2/acme/app/manifests/1\": denied",
                PullFailure::Auth,
            ),
            (
                "manifest for 127.0.0.1:41234/convoy/app:nope not found: manifest unknown: \
                 manifest unknown",
                PullFailure::NotFound,
            ),
            (
                "manifest for 127.0.0.1:41234/convoy/absent:1 not found: manifest unknown: \
                 OCI index found, but accept header does not support OCI indexes",
                PullFailure::NotFound,
            ),
            (
                "name unknown: repository name not known to registry",
                PullFailure::NotFound,
            ),
            (
                r#"Get "https://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused"#,
                PullFailure::Unreachable,
            ),
            (
                r#"Get "https://registry.invalid/v2/": dial tcp: lookup registry.invalid on 127.0.0.53:53: no such host"#,
                PullFailure::Unreachable,
            ),
            (
                r#"Get "https://10.255.255.1/v2/": net/http: request canceled while waiting for connection (Client.Timeout exceeded while awaiting headers)"#,
                PullFailure::Unreachable,
            ),
            (
                r#"Get "https://r.example:5000/v2/": dial tcp 10.0.0.9:5000: i/o timeout"#,
                PullFailure::Unreachable,
            ),
            (
                r#"Get "https://r.example:5000/v2/": x509: certificate signed by unknown authority"#,
                PullFailure::Unreachable,
            ),
            (
                r#"Get "https://r.example:5000/v2/": net/http: TLS handshake timeout"#,
                PullFailure::Unreachable,
            ),
            (
                r#"Get "https://r.example:5000/v2/": http: server gave HTTP response to HTTPS client"#,
                PullFailure::Unreachable,
            ),
            ("pull did not finish within 30s", PullFailure::Unreachable),
            // Docker's plain-HTTP retry of a refused pull from an insecure
            // registry (docker.rs then asks the distribution endpoint).
            (
                "read tcp 127.0.0.1:40270->127.0.0.1:45111: read: connection reset by peer",
                PullFailure::Unreachable,
            ),
            (
                "error parsing HTTP 400 response body: invalid character 'C' looking for \
                 beginning of value: \"Client sent an HTTP request to an HTTPS server.\\n\"",
                PullFailure::Other,
            ),
            (
                "invalid reference format: repository name must be lowercase",
                PullFailure::Other,
            ),
        ];
        for (message, kind) in cases {
            assert_eq!(classify(message), kind, "{message}");
        }
    }

    #[test]
    fn each_reason_says_what_to_do() {
        let auth = explain(
            PullFailure::Auth,
            "127.0.0.1:5000",
            None,
            "no basic auth credentials",
        );
        assert!(
            auth.starts_with(
                "authentication required by 127.0.0.1:5000 (convoy registry login 127.0.0.1:5000)"
            ),
            "{auth}"
        );
        let refused = explain(PullFailure::Auth, "r:1", Some("ci"), "unauthorized");
        assert!(refused.contains("refused the login of `ci`"), "{refused}");
        let missing = explain(PullFailure::NotFound, "r:1", None, "manifest unknown");
        assert!(missing.starts_with("not found in r:1: push"), "{missing}");
        let down = explain(PullFailure::Unreachable, "r:1", None, "connection refused");
        assert!(down.starts_with("registry r:1 unreachable"), "{down}");
    }
}

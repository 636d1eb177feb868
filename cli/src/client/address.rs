//! The coordinator's address as users type it (`HOST[:PORT]` or
//! `https://HOST[:PORT]`), checked and made into the URL that is dialed.

use anyhow::{anyhow, bail, Result};
use tonic::transport::Uri;

/// The API port `convoyd` listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 7400;

/// Accepts `https://HOST[:PORT]` or `HOST[:PORT]`; the port defaults to 7400.
/// Returns `https://HOST:PORT`. The API is TLS only, so other schemes are
/// refused.
pub fn normalize_address(raw: &str) -> Result<String> {
    let raw = raw.trim();
    if raw.is_empty() {
        bail!("the coordinator address is empty");
    }
    let with_scheme = match raw.split_once("://") {
        Some(("https", _)) => raw.to_owned(),
        Some(("http", _)) => {
            bail!("the coordinator's API is TLS only: use https:// instead of http:// in `{raw}`")
        }
        Some((scheme, _)) => bail!("unsupported scheme `{scheme}` in `{raw}`: use https://"),
        None => format!("https://{raw}"),
    };
    let uri: Uri = with_scheme
        .parse()
        .map_err(|e| anyhow!("invalid coordinator address `{raw}`: {e}"))?;
    let Some(authority) = uri.authority() else {
        bail!("invalid coordinator address `{raw}`: no host");
    };
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        bail!("invalid coordinator address `{raw}`: expected HOST:PORT, without a path");
    }
    if authority.as_str().contains('@') {
        bail!("invalid coordinator address `{raw}`: expected HOST:PORT, without user info");
    }
    let host = authority.host();
    let port = match authority.as_str()[host.len()..].strip_prefix(':') {
        None => DEFAULT_PORT,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| anyhow!("invalid coordinator address `{raw}`: bad port `{port}`"))?,
    };
    Ok(format!("https://{host}:{port}"))
}

/// A comma-separated list of coordinators (several sharing one store), each
/// normalised like [`normalize_address`]; one address is a list of one.
pub fn normalize_addresses(raw: &str) -> Result<Vec<String>> {
    if !raw.contains(',') {
        return Ok(vec![normalize_address(raw)?]);
    }
    let mut out: Vec<String> = Vec::new();
    for (i, part) in raw.split(',').enumerate() {
        if part.trim().is_empty() {
            bail!(
                "entry {} of the coordinator address list `{raw}` is empty",
                i + 1
            );
        }
        let address = normalize_address(part)?;
        if !out.contains(&address) {
            out.push(address);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_coordinators_is_normalised_entry_by_entry() {
        assert_eq!(
            normalize_addresses("c1:7400, https://c2:7400 ,c3").unwrap(),
            vec![
                "https://c1:7400".to_string(),
                "https://c2:7400".to_string(),
                format!("https://c3:{DEFAULT_PORT}"),
            ]
        );
        assert_eq!(
            normalize_addresses("c1").unwrap(),
            vec![format!("https://c1:{DEFAULT_PORT}")]
        );
        assert_eq!(normalize_addresses("c1,c1").unwrap().len(), 1);
        let err = normalize_addresses("c1,,c3").unwrap_err().to_string();
        assert!(err.contains("entry 2") && err.contains("c1,,c3"), "{err}");
        let err = normalize_addresses("c1,http://c2").unwrap_err().to_string();
        assert!(err.contains("https://"), "{err}");
    }

    #[test]
    fn host_and_port_without_scheme_get_https() {
        assert_eq!(
            normalize_address("127.0.0.1:7400").unwrap(),
            "https://127.0.0.1:7400"
        );
        assert_eq!(
            normalize_address(" coordinator.example:9000 ").unwrap(),
            "https://coordinator.example:9000"
        );
    }

    #[test]
    fn https_addresses_are_kept_and_a_trailing_slash_dropped() {
        assert_eq!(
            normalize_address("https://127.0.0.1:7400/").unwrap(),
            "https://127.0.0.1:7400"
        );
        assert_eq!(
            normalize_address("https://[::1]:7400").unwrap(),
            "https://[::1]:7400"
        );
    }

    #[test]
    fn a_missing_port_defaults_to_7400() {
        assert_eq!(normalize_address("myhost").unwrap(), "https://myhost:7400");
        assert_eq!(
            normalize_address("https://myhost").unwrap(),
            "https://myhost:7400"
        );
    }

    #[test]
    fn plain_http_other_schemes_and_paths_are_refused() {
        let err = normalize_address("http://127.0.0.1:7400").unwrap_err();
        assert!(err.to_string().contains("TLS only"), "{err}");
        assert!(normalize_address("ftp://h:1").is_err());
        assert!(normalize_address("https://h:1/api").is_err());
        assert!(normalize_address("").is_err());
        assert!(normalize_address("h:notaport").is_err());
        assert!(normalize_address("h:0").is_err());
        assert!(normalize_address("h:").is_err());
    }
}

//! The coordinator's address as users type it (`HOST[:PORT]` or
//! `https://HOST[:PORT]`, or several of them separated by commas for a
//! cluster of coordinators), checked and made into the URLs that are dialed.

use anyhow::{anyhow, bail, Result};
use tonic::transport::Uri;

/// The API port `convoyd` listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 7400;

/// Splits a comma-separated list of coordinator addresses and normalises
/// each ([`normalize_address`]); an address given twice is dialed once. An
/// empty entry (`a,,b`, a trailing comma) is refused: it is a typo more often
/// than not, and dropping it silently would hide the address meant there.
pub fn parse_addresses(raw: &str) -> Result<Vec<String>> {
    if !raw.contains(',') {
        return Ok(vec![normalize_address(raw)?]);
    }
    let mut addresses: Vec<String> = Vec::new();
    for (i, entry) in raw.split(',').enumerate() {
        if entry.trim().is_empty() {
            bail!(
                "the coordinator address list `{}` has an empty entry (number {}): separate addresses with single commas",
                raw.trim(),
                i + 1
            );
        }
        let address = normalize_address(entry)?;
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    Ok(addresses)
}

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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_comma_separated_list_gives_each_address_normalised_in_order() {
        assert_eq!(
            parse_addresses("https://c1:7400, c2:9000 ,c3").unwrap(),
            vec!["https://c1:7400", "https://c2:9000", "https://c3:7400"]
        );
        assert_eq!(
            parse_addresses(" 127.0.0.1:1 ").unwrap(),
            vec!["https://127.0.0.1:1"]
        );
        // The same coordinator written two ways is dialed once.
        assert_eq!(
            parse_addresses("c1,https://c1:7400,c2").unwrap(),
            vec!["https://c1:7400", "https://c2:7400"]
        );
    }

    #[test]
    fn an_empty_entry_in_a_list_is_refused_naming_the_list() {
        for (raw, number) in [("c1,,c2", 2), ("c1,", 2), (",c1", 1), ("c1, ,c2", 2)] {
            let err = parse_addresses(raw).unwrap_err().to_string();
            assert!(err.contains(&format!("`{}`", raw.trim())), "{raw}: {err}");
            assert!(
                err.contains(&format!("empty entry (number {number})")),
                "{raw}: {err}"
            );
        }
        assert_eq!(
            parse_addresses("").unwrap_err().to_string(),
            "the coordinator address is empty"
        );
    }

    #[test]
    fn a_bad_entry_in_a_list_is_named() {
        let err = parse_addresses("c1:7400,http://c2:7400").unwrap_err();
        assert!(err.to_string().contains("`http://c2:7400`"), "{err}");
        let err = parse_addresses("c1,c2:notaport").unwrap_err();
        assert!(err.to_string().contains("`c2:notaport`"), "{err}");
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

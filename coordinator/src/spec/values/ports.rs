//! The values of `ports`: port numbers, host IPs, protocols, and Compose's
//! short syntax `[[HOST_IP:][PUBLISHED]:]TARGET[/PROTOCOL]`.

use std::net::IpAddr;

use crate::spec::{PortSpec, Protocol};

/// A port number; `0` only where it means "any free port".
fn port_number(text: &str, allow_zero: bool) -> Result<u16, String> {
    if text.contains('-') {
        return Err("port ranges are not supported yet".to_owned());
    }
    let n: u64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a port number"))?;
    match u16::try_from(n) {
        Ok(0) if !allow_zero => Err("port 0 is out of range 1-65535".to_owned()),
        Ok(port) => Ok(port),
        Err(_) => Err(format!("port {n} is out of range 1-65535")),
    }
}

/// A container port (`target`).
pub(in crate::spec) fn target_port(text: &str) -> Result<u16, String> {
    port_number(text, false).map_err(|why| format!("invalid port `{text}`: {why}"))
}

/// A host port (`published`); empty or 0: Docker picks a free one.
pub(in crate::spec) fn published_port(text: &str) -> Result<u16, String> {
    if text.is_empty() {
        return Ok(0);
    }
    port_number(text, true).map_err(|why| format!("invalid port `{text}`: {why}"))
}

pub(in crate::spec) fn host_ip(text: &str) -> Result<String, String> {
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse::<IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| format!("`{text}` is not an IP address"))
}

pub(in crate::spec) fn protocol(text: &str) -> Result<Protocol, String> {
    match text {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        other => Err(format!(
            "unknown protocol `{other}`, expected `tcp` or `udp`"
        )),
    }
}

/// Compose's short port syntax: `[[HOST_IP:][PUBLISHED]:]TARGET[/PROTOCOL]`.
/// A lone target is published on an ephemeral host port, as Compose does.
pub(in crate::spec) fn short_port(spec: &str) -> Result<PortSpec, String> {
    let invalid = |why: String| format!("invalid port `{spec}`: {why}");
    let (ports, protocol) = match spec.rsplit_once('/') {
        Some((ports, proto)) => (ports, self::protocol(proto).map_err(invalid)?),
        None => (spec, Protocol::Tcp),
    };
    let (host_ip, rest) = match ports.strip_prefix('[') {
        Some(bracketed) => {
            let (ip, rest) = bracketed.split_once("]:").ok_or_else(|| {
                invalid("an IPv6 address in brackets must be followed by `:PORT`".to_owned())
            })?;
            (Some(ip), rest)
        }
        None => (None, ports),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (host_ip, published, target) = match (host_ip, parts.as_slice()) {
        (None, [target]) => (None, "", *target),
        (None, [published, target]) => (None, *published, *target),
        (None, [ip, published, target]) => (Some(*ip), *published, *target),
        (Some(ip), [published, target]) => (Some(ip), *published, *target),
        (None, _) => {
            return Err(invalid(
                "too many `:`; write an IPv6 host address in brackets, as `[::1]:8080:80`"
                    .to_owned(),
            ))
        }
        (Some(_), _) => return Err(invalid("expected `[IP]:PUBLISHED:TARGET`".to_owned())),
    };
    let host_ip = match host_ip {
        Some(ip) => self::host_ip(ip).map_err(invalid)?,
        None => String::new(),
    };
    let published = if published.is_empty() {
        0
    } else {
        port_number(published, true).map_err(invalid)?
    };
    let target = port_number(target, false).map_err(invalid)?;
    Ok(PortSpec {
        host_ip,
        published,
        target,
        protocol,
        mode: String::new(),
    })
}

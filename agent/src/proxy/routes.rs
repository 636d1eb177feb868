//! Which service a request is for: the routes of every service with an
//! ingress on this node, matched by host first (exact, then `*.` wildcard,
//! then routes for any host) and, among a host's routes, by the longest
//! path prefix.

use std::cmp::Reverse;

/// `ENV/SERVICE`: whose instances a route leads to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub env: String,
    pub service: String,
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.env, self.service)
    }
}

/// The host part of a route.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostMatch {
    /// `app.example.com`: that name only.
    Exact(String),
    /// `*.example.com`: any name ending in `.example.com` (not the bare
    /// `example.com`); holds `.example.com`.
    Wildcard(String),
    /// No `host`: every request.
    Any,
}

impl HostMatch {
    /// From a route's `host` as the plan holds it (lower case; empty: any).
    pub fn parse(host: &str) -> Self {
        let host = host.trim().to_ascii_lowercase();
        if host.is_empty() || host == "*" {
            Self::Any
        } else if let Some(rest) = host.strip_prefix('*') {
            Self::Wildcard(rest.to_string())
        } else {
            Self::Exact(host)
        }
    }

    /// 2 for an exact name, 1 for a wildcard, 0 for any host: the more
    /// specific match wins.
    fn rank(&self) -> u8 {
        match self {
            Self::Exact(_) => 2,
            Self::Wildcard(_) => 1,
            Self::Any => 0,
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => name == host,
            Self::Wildcard(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
            Self::Any => true,
        }
    }
}

impl std::fmt::Display for HostMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Wildcard(suffix) => write!(f, "*{suffix}"),
            Self::Any => f.write_str("*"),
        }
    }
}

/// One route of one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub host: HostMatch,
    pub path_prefix: String,
    pub service: ServiceKey,
    /// The container port requests go to.
    pub port: u16,
}

/// Whether `path` lies under `prefix`, segment by segment: `/api` takes
/// `/api`, `/api/` and `/api/users`, not `/apis`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix.is_empty() || prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

/// The request's host name as routes see it: from the URI's authority
/// (HTTP/2, absolute-form) or the `Host` header, without the port, in
/// lower case.
pub fn request_host(authority: Option<&str>, host_header: Option<&str>) -> String {
    let raw = authority.or(host_header).unwrap_or("").trim();
    let without_port = if let Some(rest) = raw.strip_prefix('[') {
        // An IPv6 literal: `[::1]:80`.
        rest.split(']').next().unwrap_or("")
    } else {
        raw.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(raw, |(name, _)| name)
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

/// Every route of the node, sorted so that the first match is the one to
/// take: most specific host first, then longest prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Routes as given; of two routes with the same host and prefix (two
    /// services claiming one place), the first one given wins.
    pub fn new(routes: Vec<Route>) -> Self {
        let mut kept: Vec<Route> = Vec::with_capacity(routes.len());
        for route in routes {
            if !kept
                .iter()
                .any(|k| k.host == route.host && k.path_prefix == route.path_prefix)
            {
                kept.push(route);
            }
        }
        // Stable: among equals, the order given.
        kept.sort_by_key(|r| (Reverse(r.host.rank()), Reverse(r.path_prefix.len())));
        Self { routes: kept }
    }

    /// The route for a request to `host` (as [`request_host`] gives it)
    /// and `path`: among the routes of the most specific host class that
    /// has a matching one, the longest prefix.
    pub fn find(&self, host: &str, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.host.matches(host) && prefix_matches(&r.path_prefix, path))
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

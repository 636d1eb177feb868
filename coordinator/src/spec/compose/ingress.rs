//! `x-convoy.ingress`: the routes of the agents' per-host proxy to a
//! service's healthy instances, and how long an instance drains before it
//! stops (docs/PROXY.md).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::keys::{next_key, IngressKey, IngressRouteKey};
use super::seeds::{scalar, value};
use crate::spec::{values, IngressRoute, IngressSpec, DEFAULT_DRAIN_TIMEOUT_MS};

/// The most routes one service has.
const MAX_ROUTES: usize = 32;
/// The longest path prefix accepted.
const MAX_PREFIX: usize = 1024;
/// The longest drain: an instance being replaced waits no longer.
const MAX_DRAIN_MS: u64 = 600_000;

pub(super) struct IngressSeed;

impl<'de> DeserializeSeed<'de> for IngressSeed {
    type Value = IngressSpec;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<IngressSpec, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for IngressSeed {
    type Value = IngressSpec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a mapping such as `{routes: [{host: app.example.com, path_prefix: /, port: 8080}], \
             drain_timeout: 30s}`",
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<IngressSpec, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut notes = Vec::new();
        let mut ingress = IngressSpec::default();
        while let Some(key) = next_key::<A, IngressKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                IngressKey::Routes => {
                    ingress.routes = value(&mut map, RoutesSeed)?.unwrap_or_default()
                }
                IngressKey::DrainTimeout => {
                    ingress.drain_timeout_ms = value(
                        &mut map,
                        scalar("a duration such as `30s` (at most 10m)", drain_timeout),
                    )?
                    .unwrap_or(DEFAULT_DRAIN_TIMEOUT_MS)
                }
            }
        }
        if ingress.routes.is_empty() {
            return Err(de::Error::custom(
                "an ingress needs `routes:`, each with a `port` (and `host`, `path_prefix` if \
                 not every request is the service's)",
            ));
        }
        Ok(ingress)
    }
}

fn drain_timeout(s: &str) -> Result<u64, String> {
    let ms = values::duration_ms(s)?;
    if ms > MAX_DRAIN_MS {
        return Err(format!(
            "`{s}` is longer than 10m: an instance being replaced would hold its rollout that long"
        ));
    }
    Ok(ms)
}

/// A route's host: a DNS name, or `*.` and one (its subdomains), matched
/// without regard to case (stored in lower case).
pub(super) fn route_host(s: &str) -> Result<String, String> {
    let host = s.trim().to_ascii_lowercase();
    let name = host.strip_prefix("*.").unwrap_or(&host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.len() > 253 || name.is_empty() || !name.split('.').all(label_ok) {
        return Err(format!(
            "`{}` is not a host name such as `app.example.com` or `*.example.com` (no port, \
             no scheme)",
            s.escape_default()
        ));
    }
    Ok(host)
}

/// A route's path prefix: an absolute path without query or fragment.
pub(super) fn path_prefix(s: &str) -> Result<String, String> {
    if !s.starts_with('/')
        || s.len() > MAX_PREFIX
        || s.bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || b == b'?' || b == b'#')
    {
        return Err(format!(
            "`{}` is not a path prefix such as `/` or `/api` (it starts with `/`, has no \
             spaces, `?` or `#`, at most {MAX_PREFIX} bytes)",
            s.escape_default()
        ));
    }
    Ok(s.to_owned())
}

struct RoutesSeed;

impl<'de> DeserializeSeed<'de> for RoutesSeed {
    type Value = Vec<IngressRoute>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RoutesSeed {
    type Value = Vec<IngressRoute>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of routes, each with `port` and optionally `host` and `path_prefix`")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out: Vec<IngressRoute> = Vec::new();
        while let Some(route) = seq.next_element_seed(RouteSeed)? {
            if let Some(same) = out
                .iter()
                .find(|o| o.host == route.host && o.path_prefix == route.path_prefix)
            {
                return Err(de::Error::custom(format!(
                    "another route already takes host `{}` and path prefix `{}` (to port {}): \
                     give each route its own host or prefix",
                    if same.host.is_empty() {
                        "*"
                    } else {
                        &same.host
                    },
                    same.path_prefix,
                    same.port
                )));
            }
            if out.len() == MAX_ROUTES {
                return Err(de::Error::custom(format!(
                    "a service has at most {MAX_ROUTES} routes"
                )));
            }
            out.push(route);
        }
        Ok(out)
    }
}

struct RouteSeed;

impl<'de> DeserializeSeed<'de> for RouteSeed {
    type Value = IngressRoute;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<IngressRoute, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RouteSeed {
    type Value = IngressRoute;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a route: a mapping with `port` and optionally `host` and `path_prefix`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<IngressRoute, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut notes = Vec::new();
        let mut route = IngressRoute {
            host: String::new(),
            path_prefix: "/".to_owned(),
            port: 0,
        };
        let mut port = None;
        while let Some(key) = next_key::<A, IngressRouteKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                IngressRouteKey::Host => {
                    route.host = value(
                        &mut map,
                        scalar("a host name such as `app.example.com`", route_host),
                    )?
                    .unwrap_or_default()
                }
                IngressRouteKey::PathPrefix => {
                    route.path_prefix = value(
                        &mut map,
                        scalar("a path prefix such as `/api`", path_prefix),
                    )?
                    .unwrap_or_else(|| "/".to_owned())
                }
                IngressRouteKey::Port => {
                    port = value(
                        &mut map,
                        scalar("the container port, 1 to 65535", values::target_port),
                    )?
                }
            }
        }
        route.port = port.ok_or_else(|| {
            de::Error::custom("a route needs `port:`: the container port the service listens on")
        })?;
        Ok(route)
    }
}

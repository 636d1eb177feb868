//! `x-convoy.ingress`: the routes of the agents' per-host proxy to a
//! service's healthy instances, and how long an instance drains before it
//! stops (docs/PROXY.md).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::keys::{next_key, IngressKey, IngressRouteKey, IngressTlsKey};
use super::seeds::{list, scalar, value};
use crate::spec::{
    values, IngressRoute, IngressSecret, IngressSpec, IngressTls, DEFAULT_DRAIN_TIMEOUT_MS,
};

/// The most routes one service has.
const MAX_ROUTES: usize = 32;
/// The longest path prefix accepted.
const MAX_PREFIX: usize = 1024;
/// The longest drain: an instance being replaced waits no longer.
const MAX_DRAIN_MS: u64 = 600_000;
/// The most certificates one service has.
const MAX_TLS: usize = 16;
/// The most host names one certificate entry names.
const MAX_TLS_HOSTS: usize = 64;

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
        let mut redirect = None;
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
                IngressKey::Tls => ingress.tls = value(&mut map, TlsListSeed)?.unwrap_or_default(),
                IngressKey::HttpsRedirect => {
                    redirect = value(&mut map, scalar("`true` or `false`", values::boolean))?
                }
            }
        }
        if redirect.is_some() && ingress.tls.is_empty() {
            return Err(de::Error::custom(
                "`https_redirect` needs `tls:`: only a host with a certificate is redirected",
            ));
        }
        ingress.https_redirect = redirect.unwrap_or(true);
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

struct TlsListSeed;

impl<'de> DeserializeSeed<'de> for TlsListSeed {
    type Value = Vec<IngressTls>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TlsListSeed {
    type Value = Vec<IngressTls>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a list of certificates such as `[{hosts: [app.example.com], certificate: \
             app_cert, key: app_key}]`",
        )
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out: Vec<IngressTls> = Vec::new();
        while let Some(tls) = seq.next_element_seed(TlsSeed)? {
            if out.len() == MAX_TLS {
                return Err(de::Error::custom(format!(
                    "a service has at most {MAX_TLS} certificates"
                )));
            }
            if let Some(host) = tls
                .hosts
                .iter()
                .find(|h| out.iter().any(|o| o.hosts.contains(h)))
            {
                return Err(de::Error::custom(format!(
                    "host `{host}` is in two certificate entries: the proxy could not tell \
                     which one to present"
                )));
            }
            out.push(tls);
        }
        Ok(out)
    }
}

struct TlsSeed;

impl<'de> DeserializeSeed<'de> for TlsSeed {
    type Value = IngressTls;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<IngressTls, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TlsSeed {
    type Value = IngressTls;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a certificate: a mapping with `hosts`, `certificate` and `key` (keys of the \
             top-level `secrets:`)",
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<IngressTls, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut notes = Vec::new();
        let mut tls = IngressTls::default();
        let (mut certificate, mut key) = (None, None);
        while let Some(k) = next_key::<A, IngressTlsKey>(&mut map, &mut seen, &mut notes)? {
            match k {
                IngressTlsKey::Hosts => {
                    tls.hosts = value(
                        &mut map,
                        list("a list of host names such as `[app.example.com]`", |_| {
                            scalar("a host name such as `app.example.com`", route_host)
                        }),
                    )?
                    .unwrap_or_default()
                }
                IngressTlsKey::Certificate => {
                    certificate = value(
                        &mut map,
                        scalar(
                            "the key of a top-level secret holding a PEM chain",
                            secret_key,
                        ),
                    )?
                }
                IngressTlsKey::Key => {
                    key = value(
                        &mut map,
                        scalar(
                            "the key of a top-level secret holding a PEM key",
                            secret_key,
                        ),
                    )?
                }
            }
        }
        if tls.hosts.is_empty() {
            return Err(de::Error::custom(
                "a certificate needs `hosts:`, the names it is presented for (SNI)",
            ));
        }
        if tls.hosts.len() > MAX_TLS_HOSTS {
            return Err(de::Error::custom(format!(
                "a certificate entry names at most {MAX_TLS_HOSTS} hosts"
            )));
        }
        let mut hosts = tls.hosts.clone();
        hosts.sort();
        if let Some(twice) = hosts.windows(2).find(|w| w[0] == w[1]) {
            return Err(de::Error::custom(format!(
                "host `{}` is named twice",
                twice[0]
            )));
        }
        let source = |s: Option<String>, what: &str| {
            s.map(|source| IngressSecret {
                source,
                ..IngressSecret::default()
            })
            .ok_or_else(|| {
                de::Error::custom(format!(
                    "a certificate needs `{what}:`, the key of a top-level `secrets:` entry \
                     holding its PEM {}",
                    if what == "key" {
                        "private key"
                    } else {
                        "certificate chain"
                    }
                ))
            })
        };
        tls.certificate = source(certificate, "certificate")?;
        // Without `key`, the certificate's secret holds the key too (one
        // PEM, as HAProxy's `crt`): one rotation replaces both at once.
        tls.key = match key {
            Some(_) => source(key, "key")?,
            None => tls.certificate.clone(),
        };
        Ok(tls)
    }
}

/// A reference to a top-level `secrets:` entry, by its key.
fn secret_key(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > crate::spec::MAX_SECRET_NAME || s.chars().any(char::is_control) {
        return Err(format!(
            "`{}` is not the key of a top-level `secrets:` entry",
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

//! A service's `ports`: Compose's short syntax (`"8080:80"`) and the long
//! one (`target:`, `published:`, ...).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::keys::{next_key, PortKey};
use super::seeds::{scalar, value};
use super::Note;
use crate::spec::{values, PortSpec, Protocol};

/// One of `ports`: the short syntax (`"8080:80"`, `80`) or the long one.
pub(super) struct PortSeed;

impl<'de> DeserializeSeed<'de> for PortSeed {
    type Value = (PortSpec, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PortSeed {
    type Value = (PortSpec, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a port such as \"8080:80\", or a mapping with `target:`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        values::short_port(v)
            .map(|p| (p, Vec::new()))
            .map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut notes = Vec::new();
        let mut target = None;
        let mut port = PortSpec {
            host_ip: String::new(),
            published: 0,
            target: 0,
            protocol: Protocol::Tcp,
            mode: String::new(),
        };
        while let Some(key) = next_key::<A, PortKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                PortKey::Target => {
                    target = value(&mut map, scalar("a port number", values::target_port))?
                }
                PortKey::Published => {
                    port.published =
                        value(&mut map, scalar("a port number", values::published_port))?
                            .unwrap_or(0);
                }
                PortKey::HostIp => {
                    port.host_ip = value(&mut map, scalar("an IP address", values::host_ip))?
                        .unwrap_or_default();
                }
                PortKey::Protocol => {
                    port.protocol = value(&mut map, scalar("`tcp` or `udp`", values::protocol))?
                        .unwrap_or(Protocol::Tcp);
                }
                // Kept for Swarm services; a plain container's is dropped
                // with a warning once the service is known not to be one.
                PortKey::Mode => {
                    port.mode = value(
                        &mut map,
                        scalar("`host` or `ingress`", |s: &str| match s {
                            "host" | "ingress" => Ok(s.to_owned()),
                            other => {
                                Err(format!("`{other}`: a port's mode is `host` or `ingress`"))
                            }
                        }),
                    )?
                    .unwrap_or_default();
                }
            }
        }
        port.target = target.ok_or_else(|| de::Error::missing_field("target"))?;
        Ok((port, notes))
    }
}

//! Networks on a node: the top-level `networks:` (what each network is), a
//! service's `networks:` (which it joins, with which aliases), and the keys
//! that shape a container there: `hostname`, `extra_hosts`, `dns`, `expose`.
//! The agent creates each network on the nodes that run the stack
//! (`convoy-ENV-NAME`); a service without `networks:` joins `convoy-ENV`.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::environment::EntriesSeed;
use super::keys::{first_time, next_key, NetworkKey, Seen, ServiceNetworkKey};
use super::seeds::{list, scalar, text, value};
use super::Note;
use crate::spec::locate::Seg;
use crate::spec::{values, NetworkAttachment, ServiceSpec};

/// The key of the environment's own network.
pub(super) const DEFAULT_NETWORK: &str = "default";

/// One entry of the top-level `networks:`.
#[derive(Default)]
pub(super) struct NetworkDef {
    /// The existing network's Docker name (`name:`, else the key) when
    /// `external: true`.
    external: Option<String>,
    internal: bool,
    labels: BTreeMap<String, String>,
}

/// The top-level `networks:`: each network by its key, with warnings.
pub(super) struct NetworksSeed;

pub(super) type Networks = (Vec<(String, NetworkDef)>, Vec<Note>);

impl<'de> DeserializeSeed<'de> for NetworksSeed {
    type Value = Networks;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NetworksSeed {
    type Value = Networks;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping from network names to networks")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok((Vec::new(), Vec::new()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut networks = Vec::new();
        let mut notes = Vec::new();
        while let Some(name) = map.next_key_seed(scalar("a network name", |name: &str| {
            network_name(name)?;
            first_time(&mut seen, name, "network")?;
            Ok(name.to_owned())
        }))? {
            let (def, def_notes) = value(&mut map, NetworkDefSeed { key: &name })?
                .unwrap_or_else(|| (NetworkDef::default(), Vec::new()));
            super::nest(&mut notes, Seg::Key(name.clone()), def_notes);
            networks.push((name, def));
        }
        Ok((networks, notes))
    }
}

struct NetworkDefSeed<'a> {
    key: &'a str,
}

impl<'de> DeserializeSeed<'de> for NetworkDefSeed<'_> {
    type Value = (NetworkDef, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for NetworkDefSeed<'_> {
    type Value = (NetworkDef, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a network: a mapping (or nothing, for a bridge network)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut notes = Vec::new();
        let mut def = NetworkDef::default();
        let mut external = false;
        let mut name = None;
        let mut set_for_creation = Vec::new();
        while let Some(key) = next_key::<A, NetworkKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                NetworkKey::Driver => {
                    value(&mut map, scalar("a network driver", driver))?;
                    set_for_creation.push("driver");
                }
                NetworkKey::Internal => {
                    def.internal = value(&mut map, scalar("`true` or `false`", values::boolean))?
                        .unwrap_or(false);
                    set_for_creation.push("internal");
                }
                NetworkKey::Labels => {
                    def.labels = value(&mut map, EntriesSeed::LABELS)?
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.unwrap_or_default()))
                        .collect();
                    set_for_creation.push("labels");
                }
                NetworkKey::External => {
                    external = value(
                        &mut map,
                        scalar(
                            "`true` or `false` (the name of an external network goes in `name:`)",
                            values::boolean,
                        ),
                    )?
                    .unwrap_or(false);
                }
                NetworkKey::Name => {
                    name = value(&mut map, scalar("a network name", network_name_owned))?;
                }
            }
        }
        if external {
            let docker_name = name.unwrap_or_else(|| self.key.to_owned());
            if docker_name == "host" {
                // As `network_mode: host` (host_access.rs); the agent also
                // refuses any network of the `host` driver, by ID too.
                return Err(de::Error::custom(
                    "the external network `host` gives the container the host's network, \
                     which only an admin may grant; Convoy cannot record that grant yet, so \
                     it refuses the spec: join a bridge network instead",
                ));
            }
            def.external = Some(docker_name);
            for key in set_for_creation {
                notes.push(Note::new(
                    key,
                    "ignored for an external network: Convoy neither creates nor changes it",
                ));
            }
        } else if name.is_some() {
            notes.push(Note::new(
                "name",
                format!(
                    "ignored: Convoy names the networks it creates `convoy-ENV-{}` \
                     (set `external: true` to use an existing network by this name)",
                    self.key
                ),
            ));
        }
        Ok((def, notes))
    }
}

/// `driver:`: `bridge`, the only kind Convoy creates.
fn driver(text: &str) -> Result<(), String> {
    match text {
        "bridge" => Ok(()),
        other => Err(format!(
            "network driver `{other}` is not supported: Convoy creates a bridge network on \
             each node that runs the stack (reaching services on other nodes is to come); \
             remove `driver:` or write `driver: bridge`"
        )),
    }
}

/// A network's key or Docker name, which Convoy puts in `convoy-ENV-NAME`.
fn network_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid network name `{name}`: use up to 64 letters, digits, `_`, `.` and `-`, \
             starting with a letter or digit"
        ))
    }
}

fn network_name_owned(name: &str) -> Result<String, String> {
    network_name(name).map(|()| name.to_owned())
}

/// A service's `networks:`: a list of names, or a mapping from names to
/// `aliases` (and keys Convoy ignores). Keeps the order written; the
/// attachments are resolved against the top-level `networks:` later.
pub(super) struct ServiceNetworksSeed;

pub(super) type ServiceNetworks = (Vec<NetworkAttachment>, Vec<Note>);

impl<'de> DeserializeSeed<'de> for ServiceNetworksSeed {
    type Value = ServiceNetworks;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ServiceNetworksSeed {
    type Value = ServiceNetworks;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of network names, or a mapping from network names to their settings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut attachments = Vec::new();
        while let Some(name) = seq.next_element_seed(scalar("a network name", |name: &str| {
            network_name(name)?;
            first_time(&mut seen, name, "network")?;
            Ok(name.to_owned())
        }))? {
            attachments.push(NetworkAttachment {
                name,
                ..NetworkAttachment::default()
            });
        }
        Ok((attachments, Vec::new()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut attachments = Vec::new();
        let mut notes = Vec::new();
        while let Some(name) = map.next_key_seed(scalar("a network name", |name: &str| {
            network_name(name)?;
            first_time(&mut seen, name, "network")?;
            Ok(name.to_owned())
        }))? {
            let (aliases, attachment_notes) = value(&mut map, AttachmentSeed)?.unwrap_or_default();
            super::nest(&mut notes, Seg::Key(name.clone()), attachment_notes);
            attachments.push(NetworkAttachment {
                name,
                aliases,
                ..NetworkAttachment::default()
            });
        }
        Ok((attachments, notes))
    }
}

/// One entry of a service's `networks:` mapping: its `aliases`.
struct AttachmentSeed;

impl<'de> DeserializeSeed<'de> for AttachmentSeed {
    type Value = (Vec<String>, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for AttachmentSeed {
    type Value = (Vec<String>, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the service's settings on the network: a mapping with `aliases:`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut notes = Vec::new();
        let mut aliases = Vec::new();
        while let Some(key) = next_key::<A, ServiceNetworkKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                ServiceNetworkKey::Aliases => {
                    aliases = value(
                        &mut map,
                        list("a list of aliases", |_| scalar("an alias", dns_name)),
                    )?
                    .unwrap_or_default();
                }
            }
        }
        Ok((aliases, notes))
    }
}

/// A name other containers resolve (an alias) or a container's `hostname`:
/// DNS labels of letters, digits, `-` and `_`, joined by dots.
pub(super) fn dns_name(name: &str) -> Result<String, String> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        });
    if valid {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "invalid host name `{name}`: use DNS labels of letters, digits, `-` and `_` \
             (up to 63 each, not starting with `-`) joined by `.`"
        ))
    }
}

/// Resolves each service's `networks:` against the top-level `networks:`:
/// a network a service names must be declared there (`default` needs not).
/// Problems name the service's `networks` key.
pub(super) fn resolve(
    services: &mut [(String, ServiceSpec)],
    declared: &[(String, NetworkDef)],
) -> Vec<Note> {
    let mut problems = Vec::new();
    for (service, spec) in services.iter_mut() {
        for attachment in &mut spec.networks {
            match declared.iter().find(|(name, _)| *name == attachment.name) {
                Some((_, def)) => {
                    if let Some(docker_name) = &def.external {
                        attachment.name.clone_from(docker_name);
                        attachment.external = true;
                    } else {
                        attachment.internal = def.internal;
                        attachment.labels.clone_from(&def.labels);
                    }
                }
                None if attachment.name == DEFAULT_NETWORK => {}
                None => {
                    problems.push(Note {
                        path: vec![Seg::Key(service.clone()), Seg::Key("networks".to_owned())],
                        message: format!(
                            "network `{}` is not declared under the top-level `networks:`: \
                             declare it there (`networks: {{{}: {{}}}}`) or remove it",
                            attachment.name, attachment.name
                        ),
                    });
                    break;
                }
            }
        }
    }
    problems
}

/// `extra_hosts`: a list of `HOST:IP` (or `HOST=IP`), or a mapping from
/// hosts to IPs; each is `HOST:IP` for Docker. `host-gateway` stands for
/// the node's own address.
pub(super) struct ExtraHostsSeed;

impl<'de> DeserializeSeed<'de> for ExtraHostsSeed {
    type Value = Vec<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ExtraHostsSeed {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of `HOST:IP`, or a mapping from hosts to IP addresses")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut hosts = Vec::new();
        while let Some(entry) = seq.next_element_seed(scalar("`HOST:IP`", |entry: &str| {
            let (host, ip) = entry
                .split_once(['=', ':'])
                .ok_or_else(|| format!("`{entry}` is not `HOST:IP`"))?;
            extra_host(host, ip)
        }))? {
            hosts.push(entry);
        }
        Ok(hosts)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut hosts = Vec::new();
        while let Some(host) = map.next_key_seed(text("a host name"))? {
            let entry =
                map.next_value_seed(scalar("an IP address", |ip: &str| extra_host(&host, ip)))?;
            hosts.push(entry);
        }
        Ok(hosts)
    }
}

fn extra_host(host: &str, ip: &str) -> Result<String, String> {
    dns_name(host)?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if ip != "host-gateway" {
        ip_address(ip)?;
    }
    Ok(format!("{host}:{ip}"))
}

/// An IPv4 or IPv6 address (`dns`, `extra_hosts`).
pub(super) fn ip_address(ip: &str) -> Result<String, String> {
    ip.parse::<IpAddr>()
        .map(|_| ip.to_owned())
        .map_err(|_| format!("`{ip}` is not an IP address"))
}

/// `dns`: one address or a list of them.
pub(super) struct DnsSeed;

impl<'de> DeserializeSeed<'de> for DnsSeed {
    type Value = Vec<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DnsSeed {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an IP address or a list of them")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        ip_address(v).map(|ip| vec![ip]).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut servers = Vec::new();
        while let Some(ip) = seq.next_element_seed(scalar("an IP address", ip_address))? {
            servers.push(ip);
        }
        Ok(servers)
    }
}

/// Most ports one `expose` range, and one service's `expose` in all, may
/// name: each is an entry of the create request.
pub(super) const MAX_EXPOSE_RANGE: u32 = 1024;

/// One entry of `expose`: `PORT`, `PORT/PROTO` or a range `FROM-TO[/PROTO]`,
/// as `PORT/PROTO` entries.
pub(super) fn expose(entry: &str) -> Result<Vec<String>, String> {
    let (ports, protocol) = match entry.split_once('/') {
        Some((ports, protocol @ ("tcp" | "udp"))) => (ports, protocol),
        Some((_, protocol)) => {
            return Err(format!(
                "protocol `{protocol}` of `{entry}`: expected `tcp` or `udp`"
            ))
        }
        None => (entry, "tcp"),
    };
    let port = |text: &str| match text.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(format!(
            "`{entry}` is not a port (1-65535) or a range of ports"
        )),
    };
    let (from, to) = match ports.split_once('-') {
        Some((from, to)) => (port(from)?, port(to)?),
        None => (port(ports)?, port(ports)?),
    };
    if from > to {
        return Err(format!("range `{entry}` ends before it starts"));
    }
    if u32::from(to - from) >= MAX_EXPOSE_RANGE {
        return Err(format!(
            "range `{entry}` names more than {MAX_EXPOSE_RANGE} ports: expose fewer"
        ));
    }
    Ok((from..=to).map(|p| format!("{p}/{protocol}")).collect())
}

/// An `expose` entry's ports, refused when they take the service's ports
/// (counted in `total`) over [`MAX_EXPOSE_RANGE`].
pub(super) fn expose_counted(entry: &str, total: &Cell<u32>) -> Result<Vec<String>, String> {
    let ports = expose(entry)?;
    let sum = total.get().saturating_add(ports.len() as u32);
    total.set(sum);
    if sum > MAX_EXPOSE_RANGE {
        return Err(format!(
            "`expose` names more than {MAX_EXPOSE_RANGE} ports with `{entry}`: expose fewer"
        ));
    }
    Ok(ports)
}

/// `expose`: its entries' ports, each once, in the order written.
pub(super) fn expose_list(entries: Vec<Vec<String>>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    entries
        .into_iter()
        .flatten()
        .filter(|port| seen.insert(port.clone()))
        .collect()
}

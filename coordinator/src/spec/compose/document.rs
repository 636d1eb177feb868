//! The top level of a spec file: `services:`, `units:`, `name:`,
//! `version:`, `networks:`, `volumes:`, `configs:` and `secrets:`, and the
//! one namespace services and units share.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use super::configs::ConfigsSeed;
use super::depends_on::{self, Written};
use super::keys::{first_time, next_key, TopKey};
use super::networks::{self, NetworksSeed};
use super::secrets::{self, SecretsSeed};
use super::seeds::{scalar, value};
use super::service::ServiceSeed;
use super::units::UnitsSeed;
use super::volumes::{self, DeclsSeed};
use super::{nest, Document, Note};
use crate::spec::locate::Seg;
use crate::spec::{values, ServiceSpec};

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DocumentVisitor)
    }
}

pub(super) const NO_SERVICES: &str =
    "missing field `services`: a spec lists its services under `services:` \
                 (containers) or `units:` (systemd services)";

struct DocumentVisitor;

impl<'de> Visitor<'de> for DocumentVisitor {
    type Value = Document;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Compose file: a mapping with `services:` or `units:`")
    }

    /// An empty file, or one holding only comments.
    fn visit_unit<E: de::Error>(self) -> Result<Document, E> {
        Err(E::custom(NO_SERVICES))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Document, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut notes = Vec::new();
        let mut problems = Vec::new();
        let mut services = None;
        let mut units = None;
        let mut declared = Vec::new();
        let mut declared_volumes = Vec::new();
        let mut configs = Vec::new();
        let mut declared_secrets = Vec::new();
        let mut depends_on = Vec::new();
        let mut swarm_reads = Vec::new();
        let mut top_swarm = None;
        while let Some(key) = next_key::<A, TopKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                TopKey::Services => {
                    let read = map.next_value_seed(ServicesSeed)?;
                    services = Some(read.services);
                    depends_on = read.depends_on;
                    swarm_reads = read.swarm;
                    nest(&mut notes, Seg::Key("services".to_owned()), read.notes);
                    nest(
                        &mut problems,
                        Seg::Key("services".to_owned()),
                        read.problems,
                    );
                }
                TopKey::Units => {
                    let read = map.next_value_seed(UnitsSeed)?;
                    units = Some(read.services);
                    nest(&mut notes, Seg::Key("units".to_owned()), read.notes);
                    nest(&mut problems, Seg::Key("units".to_owned()), read.problems);
                }
                TopKey::Name => {
                    value(&mut map, scalar("a project name", values::project_name))?;
                }
                TopKey::Configs => {
                    if let Some((read, config_notes)) = value(&mut map, ConfigsSeed)? {
                        configs = read;
                        nest(&mut notes, Seg::Key("configs".to_owned()), config_notes);
                    }
                }
                TopKey::Secrets => {
                    if let Some(read) = value(&mut map, SecretsSeed)? {
                        declared_secrets = read.decls;
                        nest(&mut notes, Seg::Key("secrets".to_owned()), read.notes);
                        nest(&mut problems, Seg::Key("secrets".to_owned()), read.problems);
                    }
                }
                TopKey::Networks => {
                    if let Some((read, network_notes)) = value(&mut map, NetworksSeed)? {
                        declared = read;
                        nest(&mut notes, Seg::Key("networks".to_owned()), network_notes);
                    }
                }
                TopKey::Volumes => {
                    if let Some((read, volume_notes)) = value(&mut map, DeclsSeed)? {
                        declared_volumes = read;
                        nest(&mut notes, Seg::Key("volumes".to_owned()), volume_notes);
                    }
                }
                TopKey::Convoy => {
                    top_swarm = value(&mut map, super::convoy::TopConvoySeed)?.flatten();
                }
                TopKey::Version => {
                    map.next_value::<IgnoredAny>()?;
                    notes.push(Note::new("version", "obsolete in Compose, ignored"));
                }
            }
        }
        if services.is_none() && units.is_none() {
            return Err(de::Error::custom(NO_SERVICES));
        }
        let mut services = services.unwrap_or_default();
        let mut swarm_notes = Vec::new();
        let mut swarm_problems = Vec::new();
        super::swarm::resolve(
            &mut services,
            swarm_reads,
            top_swarm.as_ref(),
            &mut swarm_notes,
            &mut swarm_problems,
        );
        nest(&mut notes, Seg::Key("services".to_owned()), swarm_notes);
        nest(
            &mut problems,
            Seg::Key("services".to_owned()),
            swarm_problems,
        );
        nest(
            &mut problems,
            Seg::Key("services".to_owned()),
            networks::resolve(&mut services, &declared),
        );
        nest(
            &mut problems,
            Seg::Key("services".to_owned()),
            volumes::resolve(&mut services, &declared_volumes),
        );
        nest(
            &mut problems,
            Seg::Key("services".to_owned()),
            super::configs::resolve(&mut services, &configs),
        );
        // Among containers only: a unit is not a service to wait for.
        let mut dep_notes = Vec::new();
        let dep_problems = depends_on::resolve(&mut services, depends_on, &mut dep_notes);
        nest(&mut notes, Seg::Key("services".to_owned()), dep_notes);
        nest(&mut problems, Seg::Key("services".to_owned()), dep_problems);
        nest(
            &mut problems,
            Seg::Key("services".to_owned()),
            secrets::resolve(&mut services, "service", &declared_secrets),
        );
        let mut units = units.unwrap_or_default();
        nest(
            &mut problems,
            Seg::Key("units".to_owned()),
            secrets::resolve(&mut units, "unit", &declared_secrets),
        );
        // One namespace: instances, status and `convoy delete` go by name.
        for (name, _) in &units {
            if services.iter().any(|(service, _)| service == name) {
                problems.push(Note {
                    path: vec![Seg::Key("units".to_owned()), Seg::Key(name.clone())],
                    message: format!(
                        "`{name}` is also a service under `services:`: services and units share \
                         one namespace, so give one of them another name"
                    ),
                });
            }
        }
        services.extend(units);
        Ok(Document {
            services,
            secrets: declared_secrets,
            notes,
            problems,
        })
    }
}

pub(super) struct Services {
    pub(super) services: Vec<(String, ServiceSpec)>,
    pub(super) notes: Vec<Note>,
    pub(super) problems: Vec<Note>,
    /// Each service's `depends_on` as written.
    pub(super) depends_on: Vec<(String, Vec<Written>)>,
    /// Each service's `x-convoy.swarm` reading, in the order of `services`.
    pub(super) swarm: Vec<super::swarm::SwarmRead>,
}

struct ServicesSeed;

impl<'de> DeserializeSeed<'de> for ServicesSeed {
    type Value = Services;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ServicesSeed {
    type Value = Services;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping from service names to services")
    }

    /// `services:` with nothing under it.
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(E::custom("no services defined: a spec needs at least one"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut services = Vec::new();
        let mut notes = Vec::new();
        let mut problems = Vec::new();
        let mut depends_on = Vec::new();
        let mut swarm = Vec::new();
        loop {
            let name_seed = scalar("a service name", |name: &str| {
                values::service_name(name)?;
                first_time(&mut seen, name, "service")?;
                Ok(name.to_owned())
            });
            let Some(name) = map.next_key_seed(name_seed)? else {
                break;
            };
            let (spec, service_notes, problem, written, swarm_read) =
                map.next_value_seed(ServiceSeed)?;
            swarm.push(swarm_read);
            if !written.is_empty() {
                depends_on.push((name.clone(), written));
            }
            nest(&mut notes, Seg::Key(name.clone()), service_notes);
            nest(
                &mut problems,
                Seg::Key(name.clone()),
                problem.into_iter().collect(),
            );
            services.push((name, spec));
        }
        if services.is_empty() {
            return Err(de::Error::custom(
                "no services defined: a spec needs at least one",
            ));
        }
        Ok(Services {
            services,
            notes,
            problems,
            depends_on,
            swarm,
        })
    }
}

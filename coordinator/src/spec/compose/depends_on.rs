//! A service's `depends_on`: a list of service names (`service_started`),
//! or a mapping of `{condition, required, restart}` per service. Checked
//! against the file's other services once all are read (`resolve`): a
//! missing one, the service itself, or a cycle is an error.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::keys::{first_time, next_key, DependsOnKey, Seen};
use super::seeds::{scalar, value};
use super::Note;
use crate::spec::locate::Seg;
use crate::spec::{values, Dependency, DependencyCondition, ServiceSpec};

/// One entry as written: the dependency, and whether it must be a service
/// of the file.
pub(super) struct Written {
    pub dependency: Dependency,
    pub required: bool,
}

fn condition(text: &str) -> Result<DependencyCondition, String> {
    match text {
        "service_started" => Ok(DependencyCondition::Started),
        "service_healthy" => Ok(DependencyCondition::Healthy),
        "service_completed_successfully" => Ok(DependencyCondition::CompletedSuccessfully),
        other => Err(format!(
            "unknown condition `{other}`: expected `service_started`, `service_healthy` or \
             `service_completed_successfully`"
        )),
    }
}

fn bool_of(text: &str) -> Result<bool, String> {
    match text {
        "true" | "True" | "TRUE" => Ok(true),
        "false" | "False" | "FALSE" => Ok(false),
        other => Err(format!("expected `true` or `false`, not `{other}`")),
    }
}

fn service_name(text: &str) -> Result<String, String> {
    values::service_name(text)?;
    Ok(text.to_owned())
}

/// `depends_on:`, its entries in the order written, and its warnings.
pub(super) struct DependsOnSeed;

impl<'de> DeserializeSeed<'de> for DependsOnSeed {
    type Value = (Vec<Written>, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DependsOnSeed {
    type Value = (Vec<Written>, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of services, or a mapping of services to `{condition}`")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut out = Vec::new();
        loop {
            let seed = scalar("a service name", |name: &str| {
                let name = service_name(name)?;
                first_time(&mut seen, &name, "dependency")?;
                Ok(name)
            });
            let Some(service) = seq.next_element_seed(seed)? else {
                break;
            };
            out.push(Written {
                dependency: Dependency {
                    service,
                    condition: DependencyCondition::Started,
                    restart: false,
                },
                required: true,
            });
        }
        Ok((out, Vec::new()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut out = Vec::new();
        let mut notes = Vec::new();
        loop {
            let seed = scalar("a service name", |name: &str| {
                let name = service_name(name)?;
                first_time(&mut seen, &name, "dependency")?;
                Ok(name)
            });
            let Some(service) = map.next_key_seed(seed)? else {
                break;
            };
            let (written, entry_notes) = value(&mut map, EntrySeed(service.clone()))?
                .unwrap_or_else(|| {
                    // `db:` with nothing under it: as `service_started`.
                    (
                        Written {
                            dependency: Dependency {
                                service: service.clone(),
                                condition: DependencyCondition::Started,
                                restart: false,
                            },
                            required: true,
                        },
                        Vec::new(),
                    )
                });
            super::nest(&mut notes, Seg::Key(service), entry_notes);
            out.push(written);
        }
        Ok((out, notes))
    }
}

/// `{condition, required, restart}` of one dependency.
struct EntrySeed(String);

impl<'de> DeserializeSeed<'de> for EntrySeed {
    type Value = (Written, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed {
    type Value = (Written, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping with `condition`, `required` or `restart`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut notes = Vec::new();
        let mut written = Written {
            dependency: Dependency {
                service: self.0,
                condition: DependencyCondition::Started,
                restart: false,
            },
            required: true,
        };
        while let Some(key) = next_key::<A, DependsOnKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                DependsOnKey::Condition => {
                    if let Some(c) = value(&mut map, scalar("a condition", condition))? {
                        written.dependency.condition = c;
                    }
                }
                DependsOnKey::Required => {
                    written.required =
                        value(&mut map, scalar("`true` or `false`", bool_of))?.unwrap_or(true);
                }
                DependsOnKey::Restart => {
                    let restart =
                        value(&mut map, scalar("`true` or `false`", bool_of))?.unwrap_or(false);
                    written.dependency.restart = restart;
                }
            }
        }
        Ok((written, notes))
    }
}

/// Checks the services' dependencies against each other: every required
/// one is a service of the file (an optional one that is not is dropped
/// with a warning), none is the service itself, and there is no cycle.
/// Returns the problems (errors) and adds warnings to `notes`; paths are
/// relative to `services:`.
pub(super) fn resolve(
    services: &mut [(String, ServiceSpec)],
    written: Vec<(String, Vec<Written>)>,
    notes: &mut Vec<Note>,
) -> Vec<Note> {
    let mut problems = Vec::new();
    let names: Vec<String> = services.iter().map(|(name, _)| name.clone()).collect();
    for (service, entries) in written {
        let path = |dep: &str| {
            vec![
                Seg::Key(service.clone()),
                Seg::Key("depends_on".to_owned()),
                Seg::Key(dep.to_owned()),
            ]
        };
        let mut kept = Vec::new();
        for Written {
            dependency,
            required,
        } in entries
        {
            let dep = dependency.service.clone();
            if dep == service {
                problems.push(Note {
                    path: path(&dep),
                    message: format!("`{service}` depends on itself: remove it from `depends_on`"),
                });
            } else if !names.contains(&dep) {
                if required {
                    problems.push(Note {
                        path: path(&dep),
                        message: format!(
                            "`{dep}` is not a service of this file: add it under `services:`, \
                             remove it, or mark it `required: false`"
                        ),
                    });
                } else {
                    notes.push(Note {
                        path: path(&dep),
                        message: format!(
                            "`{dep}` is not a service of this file and not required: ignored"
                        ),
                    });
                }
            } else {
                kept.push(dependency);
            }
        }
        if let Some((_, spec)) = services.iter_mut().find(|(name, _)| *name == service) {
            spec.depends_on = kept;
        }
    }
    if problems.is_empty() {
        if let Some(cycle) = find_cycle(services) {
            problems.push(Note {
                path: vec![
                    Seg::Key(cycle[0].clone()),
                    Seg::Key("depends_on".to_owned()),
                ],
                message: format!(
                    "`depends_on` makes a cycle ({}): no service of it could ever start; \
                     remove one of these dependencies",
                    cycle
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(" -> ")
                ),
            });
        }
    }
    problems
}

/// The first cycle of dependencies, from a service back to itself.
fn find_cycle(services: &[(String, ServiceSpec)]) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let index = |name: &str| services.iter().position(|(n, _)| n == name);
    let mut marks = vec![Mark::New; services.len()];
    for start in 0..services.len() {
        if marks[start] != Mark::New {
            continue;
        }
        // Iterative depth-first search: (service, next dependency to try).
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::Open;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let deps = &services[node].1.depends_on;
            if *next >= deps.len() {
                marks[node] = Mark::Done;
                stack.pop();
                continue;
            }
            let dep = &deps[*next].service;
            *next += 1;
            let Some(d) = index(dep) else { continue };
            match marks[d] {
                Mark::New => {
                    marks[d] = Mark::Open;
                    stack.push((d, 0));
                }
                Mark::Open => {
                    let from = stack.iter().position(|(n, _)| *n == d).unwrap_or(0);
                    let mut cycle: Vec<String> = stack[from..]
                        .iter()
                        .map(|(n, _)| services[*n].0.clone())
                        .collect();
                    cycle.push(services[d].0.clone());
                    return Some(cycle);
                }
                Mark::Done => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::spec::{parse, Dependency, DependencyCondition, SpecFile};

    fn spec(services: &str) -> Result<SpecFile, String> {
        parse("app.yaml", &format!("services:\n{services}")).map_err(|e| e.to_string())
    }

    fn deps(file: &SpecFile, service: &str) -> Vec<(String, DependencyCondition)> {
        file.services[service]
            .depends_on
            .iter()
            .map(|d| (d.service.clone(), d.condition))
            .collect()
    }

    #[test]
    fn the_list_form_waits_for_each_service_to_start() {
        let file = spec(
            "  web:\n    image: nginx\n    depends_on: [db, cache]\n  db:\n    image: pg\n  \
             cache:\n    image: redis\n",
        )
        .unwrap();
        assert_eq!(
            deps(&file, "web"),
            [
                ("db".to_owned(), DependencyCondition::Started),
                ("cache".to_owned(), DependencyCondition::Started)
            ]
        );
        assert!(file.services["db"].depends_on.is_empty());
        assert!(file.warnings.is_empty(), "{:?}", file.warnings);
    }

    #[test]
    fn the_long_form_reads_each_condition() {
        let file = spec(
            "  web:\n    image: nginx\n    depends_on:\n      db:\n        condition: \
             service_healthy\n        required: true\n        restart: false\n      migrate:\n        \
             condition: service_completed_successfully\n      cache:\n  db:\n    image: pg\n  \
             migrate:\n    image: m\n  cache:\n    image: redis\n",
        )
        .unwrap();
        assert_eq!(
            deps(&file, "web"),
            [
                ("db".to_owned(), DependencyCondition::Healthy),
                (
                    "migrate".to_owned(),
                    DependencyCondition::CompletedSuccessfully
                ),
                ("cache".to_owned(), DependencyCondition::Started)
            ]
        );
        assert!(file.warnings.is_empty(), "{:?}", file.warnings);
    }

    #[test]
    fn an_unknown_condition_is_refused_listing_the_three() {
        let err = spec(
            "  web:\n    image: nginx\n    depends_on:\n      db:\n        condition: \
             service_ready\n  db:\n    image: pg\n",
        )
        .unwrap_err();
        assert!(
            err.starts_with("app.yaml:6:20: services.web.depends_on.db.condition: unknown condition `service_ready`"),
            "{err}"
        );
        for condition in [
            "service_started",
            "service_healthy",
            "service_completed_successfully",
        ] {
            assert!(err.contains(condition), "{err}");
        }
        let err = spec(
            "  web:\n    image: nginx\n    depends_on:\n      db:\n        wait: true\n  db:\n    \
             image: pg\n",
        )
        .unwrap_err();
        assert!(err.contains("unknown field `wait`"), "{err}");
    }

    #[test]
    fn a_missing_service_is_an_error_unless_not_required() {
        let err = spec("  web:\n    image: nginx\n    depends_on: [db]\n").unwrap_err();
        assert!(
            err.starts_with("app.yaml:4:"),
            "the error names the line of `depends_on`: {err}"
        );
        assert!(
            err.contains("services.web.depends_on.db: `db` is not a service of this file"),
            "{err}"
        );
        let file =
            spec("  web:\n    image: nginx\n    depends_on:\n      db:\n        required: false\n")
                .unwrap();
        assert!(file.services["web"].depends_on.is_empty());
        assert_eq!(
            file.warnings,
            [
                "app.yaml:5: services.web.depends_on.db: `db` is not a service of this file and \
                 not required: ignored"
            ]
        );
    }

    #[test]
    fn a_service_depending_on_itself_or_a_cycle_is_an_error_naming_it() {
        let err = spec("  web:\n    image: nginx\n    depends_on: [web]\n").unwrap_err();
        assert!(err.contains("`web` depends on itself"), "{err}");
        let err = spec(
            "  web:\n    image: nginx\n    depends_on: [api]\n  api:\n    image: a\n    \
             depends_on: [db]\n  db:\n    image: pg\n    depends_on: [web]\n",
        )
        .unwrap_err();
        assert!(
            err.contains("makes a cycle (`web` -> `api` -> `db` -> `web`)"),
            "{err}"
        );
        let err =
            spec("  web:\n    image: nginx\n    depends_on: [db, db]\n  db:\n    image: pg\n")
                .unwrap_err();
        assert!(err.contains("duplicate dependency `db`"), "{err}");
    }

    #[test]
    fn restart_true_reaches_the_agent_and_depends_on_changes_the_spec_hash_only_when_used() {
        let file = spec(
            "  web:\n    image: nginx\n    depends_on:\n      db:\n        restart: true\n  db:\n    \
             image: pg\n",
        )
        .unwrap();
        assert!(file.warnings.is_empty(), "{:?}", file.warnings);
        let web = &file.services["web"];
        assert_eq!(
            web.depends_on,
            [Dependency {
                service: "db".into(),
                condition: DependencyCondition::Started,
                restart: true,
            }]
        );
        let mut without = web.clone();
        without.depends_on.clear();
        assert_ne!(web.spec_hash(), without.spec_hash());
        let plain = spec("  web:\n    image: nginx\n").unwrap();
        assert_eq!(plain.services["web"].spec_hash(), without.spec_hash());
        let wire = web.container_spec().depends_on;
        assert_eq!(wire.len(), 1);
        assert_eq!(wire[0].service, "db");
        assert_eq!(
            wire[0].condition,
            convoy_proto::dependency::Condition::Started as i32
        );
        assert!(wire[0].restart, "the agent acts on `restart: true`");
    }
}

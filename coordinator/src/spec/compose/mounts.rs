//! A service's `configs:` and `secrets:` (and a unit's `secrets:`): names
//! (`- NAME`) or mappings with `source`, `target`, `uid`, `gid` and `mode`.
//! One seed reads both; what differs (names, targets, defaults, the words
//! of the errors) is the [`MountKind`] of `configs.rs` and `secrets.rs`.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::configs::{id, mode};
use super::keys::{first_time, next_key, Seen, ServiceMountKey, UnitSecretKey};
use super::seeds::{scalar, value};
use super::Note;
use crate::spec::locate::Seg;

/// What a kind of mount (a service's config, a service's secret, a unit's
/// secret) takes and how its errors read.
pub(super) trait MountKind: Copy {
    type Mount;
    /// `config` or `secret`: the kind, in the words of the errors.
    const NOUN: &'static str;
    /// What a source is (`a config name`), for errors.
    const NAME: &'static str;
    /// What `mode` is, with an example.
    const EXPECTING_MODE: &'static str;
    /// The mode when none is written.
    const DEFAULT_MODE: u32;

    /// Checks a source: a key of the top-level section.
    fn source(name: &str) -> Result<(), String>;
    /// The target as written, or the default one from the source.
    fn target(self, written: &str) -> Result<String, String>;
    /// What a target is (`a path`).
    fn expecting_target(self) -> &'static str;
    /// What two equal targets are, for the error (`config target`).
    fn target_what(self) -> &'static str;
    /// A unit's credential: `source` and `target` only, as systemd owns
    /// the file and sets its mode.
    fn credential(self) -> bool {
        false
    }

    /// The mount, as read.
    fn mount(fields: MountFields) -> Self::Mount;
}

/// What a mount entry says.
pub(super) struct MountFields {
    pub(super) source: String,
    pub(super) target: String,
    pub(super) uid: Option<u32>,
    pub(super) gid: Option<u32>,
    pub(super) mode: u32,
}

/// The list: each entry's target once.
pub(super) struct MountsSeed<K>(pub(super) K);

impl<'de, K: MountKind> DeserializeSeed<'de> for MountsSeed<K> {
    type Value = (Vec<K::Mount>, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, K: MountKind> Visitor<'de> for MountsSeed<K> {
    type Value = (Vec<K::Mount>, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = K::NOUN;
        write!(
            f,
            "a list of {noun} names or of mappings with `source` and `target`"
        )
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut mounts: Vec<K::Mount> = Vec::new();
        let mut notes = Vec::new();
        let mut targets = Seen::default();
        while let Some((mount, item_notes)) = seq.next_element_seed(MountSeed {
            kind: self.0,
            targets: &mut targets,
        })? {
            super::nest(&mut notes, Seg::Index(mounts.len()), item_notes);
            mounts.push(mount);
        }
        Ok((mounts, notes))
    }
}

/// The next key of a long-syntax entry, from the key set of its kind.
fn next_mount_key<'de, A: MapAccess<'de>>(
    map: &mut A,
    seen: &mut Seen,
    notes: &mut Vec<Note>,
    credential: bool,
) -> Result<Option<ServiceMountKey>, A::Error> {
    if !credential {
        return next_key::<A, ServiceMountKey>(map, seen, notes);
    }
    Ok(
        next_key::<A, UnitSecretKey>(map, seen, notes)?.map(|key| match key {
            UnitSecretKey::Source => ServiceMountKey::Source,
            UnitSecretKey::Target => ServiceMountKey::Target,
        }),
    )
}

/// One entry of the list.
struct MountSeed<'a, K> {
    kind: K,
    targets: &'a mut Seen,
}

impl<K: MountKind> MountSeed<'_, K> {
    fn first_time(&mut self, target: &str) -> Result<(), String> {
        first_time(self.targets, target, self.kind.target_what())
    }
}

impl<'de, K: MountKind> DeserializeSeed<'de> for MountSeed<'_, K> {
    type Value = (K::Mount, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, K: MountKind> Visitor<'de> for MountSeed<'_, K> {
    type Value = (K::Mount, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = K::NOUN;
        write!(f, "a {noun} name, or a mapping with `source` and `target`")
    }

    fn visit_str<E: de::Error>(mut self, source: &str) -> Result<Self::Value, E> {
        K::source(source).map_err(E::custom)?;
        let target = self.kind.target(source).map_err(E::custom)?;
        self.first_time(&target).map_err(E::custom)?;
        let mount = K::mount(MountFields {
            source: source.to_owned(),
            target,
            uid: None,
            gid: None,
            mode: K::DEFAULT_MODE,
        });
        Ok((mount, Vec::new()))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut notes = Vec::new();
        let mut source = String::new();
        let mut target = None;
        let (mut uid, mut gid, mut mode_bits) = (None, None, K::DEFAULT_MODE);
        let kind = self.kind;
        while let Some(key) = next_mount_key(&mut map, &mut seen, &mut notes, kind.credential())? {
            match key {
                ServiceMountKey::Source => {
                    source = map.next_value_seed(scalar(K::NAME, |n: &str| {
                        K::source(n).map(|()| n.to_owned())
                    }))?;
                }
                ServiceMountKey::Target => {
                    let read = map
                        .next_value_seed(scalar(kind.expecting_target(), |t: &str| {
                            kind.target(t)
                        }))?;
                    target = Some(read);
                }
                ServiceMountKey::Uid => uid = value(&mut map, scalar("a numeric user id", id))?,
                ServiceMountKey::Gid => gid = value(&mut map, scalar("a numeric group id", id))?,
                ServiceMountKey::Mode => {
                    mode_bits = value(&mut map, scalar(K::EXPECTING_MODE, mode))?
                        .unwrap_or(K::DEFAULT_MODE);
                }
            }
        }
        if source.is_empty() {
            let noun = K::NOUN;
            return Err(de::Error::custom(format!(
                "missing field `source`: name the {noun} from the top-level `{noun}s:`"
            )));
        }
        let target = match target {
            Some(target) => target,
            None => kind.target(&source).map_err(de::Error::custom)?,
        };
        self.first_time(&target).map_err(de::Error::custom)?;
        let mount = K::mount(MountFields {
            source,
            target,
            uid,
            gid,
            mode: mode_bits,
        });
        Ok((mount, notes))
    }
}

#[cfg(test)]
mod tests {
    use crate::spec::configs::DEFAULT_CONFIG_MODE;
    use crate::spec::parse;
    use crate::spec::secrets::DEFAULT_SECRET_MODE;

    const TOP: &str = "configs:\n  c:\n    content: x\nsecrets:\n  s:\n    external: true\n";

    fn service(body: &str) -> String {
        format!("services:\n  web:\n    image: nginx\n{body}{TOP}")
    }

    fn unit(body: &str) -> String {
        format!("units:\n  u:\n    exec_start: /bin/true\n{body}{TOP}")
    }

    /// Issue 13: one seed reads a service's `configs:` and `secrets:` and a
    /// unit's `secrets:`; each keeps its own words in its errors.
    #[test]
    fn each_kind_of_mount_keeps_its_own_words_in_errors() {
        let cases = [
            (
                service("    configs:\n      - [1]\n"),
                "a config name, or a mapping with `source` and `target`",
            ),
            (
                service("    secrets:\n      - [1]\n"),
                "a secret name, or a mapping with `source` and `target`",
            ),
            (
                service("    configs:\n      - target: /x\n"),
                "missing field `source`: name the config from the top-level `configs:`",
            ),
            (
                service("    secrets:\n      - target: /x\n"),
                "missing field `source`: name the secret from the top-level `secrets:`",
            ),
            (
                unit("    secrets:\n      - target: x\n"),
                "missing field `source`: name the secret from the top-level `secrets:`",
            ),
            (
                service("    configs:\n      - c\n      - source: c\n        target: /c\n"),
                "duplicate config target `/c`",
            ),
            (
                service(
                    "    secrets:\n      - s\n      - source: s\n        target: /run/secrets/s\n",
                ),
                "duplicate secret target `/run/secrets/s`",
            ),
            (
                unit("    secrets:\n      - s\n      - source: s\n        target: s\n"),
                "duplicate credential name `s`",
            ),
            (
                unit("    secrets:\n      - source: s\n        mode: 0400\n"),
                "systemd sets a credential's mode",
            ),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .filter_map(|(yaml, says)| {
                let err = parse("app.yaml", yaml).map_or_else(|e| e.to_string(), |_| "ok".into());
                (!err.contains(says)).then(|| format!("{yaml}=> {err}\n   not: {says}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn short_and_long_entries_of_each_kind_read_as_written() {
        let yaml = format!(
            "services:\n  web:\n    image: nginx\n    configs:\n      - c\n      - source: c\n        \
             target: etc/c\n        gid: 5\n    secrets:\n      - s\n      - source: s\n        \
             target: k\n        uid: \"7\"\n        mode: 0440\nunits:\n  u:\n    \
             exec_start: /bin/true\n    secrets:\n      - s\n      - source: s\n        \
             target: other\n{TOP}"
        );
        let file = parse("app.yaml", &yaml).unwrap();
        let web = &file.services["web"];
        let configs: Vec<_> = web
            .configs
            .iter()
            .map(|m| (m.source.as_str(), m.target.as_str(), m.uid, m.gid, m.mode))
            .collect();
        assert_eq!(
            configs,
            [
                ("c", "/c", None, None, DEFAULT_CONFIG_MODE),
                ("c", "/etc/c", None, Some(5), DEFAULT_CONFIG_MODE),
            ]
        );
        let secrets = |name: &str| -> Vec<_> {
            file.services[name]
                .secrets
                .iter()
                .map(|m| (m.source.clone(), m.target.clone(), m.uid, m.gid, m.mode))
                .collect()
        };
        let s = || "s".to_owned();
        assert_eq!(
            secrets("web"),
            [
                (
                    s(),
                    "/run/secrets/s".to_owned(),
                    None,
                    None,
                    DEFAULT_SECRET_MODE
                ),
                (s(), "/run/secrets/k".to_owned(), Some(7), None, 0o440),
            ]
        );
        assert_eq!(
            secrets("u"),
            [
                (s(), s(), None, None, DEFAULT_SECRET_MODE),
                (s(), "other".to_owned(), None, None, DEFAULT_SECRET_MODE),
            ]
        );
    }
}

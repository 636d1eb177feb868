//! Volumes: the top-level `volumes:` (what each named volume is) and a
//! service's `volumes` in Compose's short syntax (`SRC:DST[:OPTS]`, or a
//! lone `DST` for an anonymous volume) and long syntax (a mapping with
//! `type`, `source`, `target`, ...). A named volume a service mounts must
//! be declared at the top level, as Compose requires; `resolve` checks
//! that and hands each service the declarations it uses.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::environment::EntriesSeed;
use super::keys::{
    first_time, next_key, BindKey, MountTmpfsKey, MountVolumeKey, Seen, ServiceVolumeKey, VolumeKey,
};
use super::seeds::{scalar, text, value};
use super::{nest, Note};
use crate::spec::locate::Seg;
use crate::spec::{values, MountKind, MountSpec, ServiceSpec, VolumeDecl};

/// `volumes` of a service: each entry in the short or the long syntax,
/// with the warnings of the long ones.
pub(super) struct VolumesSeed;

pub(super) type Mounts = (Vec<MountSpec>, Vec<Note>);

impl<'de> DeserializeSeed<'de> for VolumesSeed {
    type Value = Mounts;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for VolumesSeed {
    type Value = Mounts;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a list of volumes, each `SRC:DST[:ro|rw]` or a mapping with `type` and `target`",
        )
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut mounts = Vec::new();
        let mut notes = Vec::new();
        while let Some((mount, item_notes)) = seq.next_element_seed(MountSeed)? {
            nest(&mut notes, Seg::Index(mounts.len()), item_notes);
            mounts.push(mount);
        }
        Ok((mounts, notes))
    }
}

/// One entry of a service's `volumes`.
struct MountSeed;

impl<'de> DeserializeSeed<'de> for MountSeed {
    type Value = (MountSpec, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MountSeed {
    type Value = (MountSpec, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a volume: `SRC:DST[:ro|rw]`, `DST`, or a mapping with `type` and `target`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        short(v).map(|m| (m, Vec::new())).map_err(E::custom)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut notes = Vec::new();
        let mut kind = None;
        let mut mount = MountSpec::default();
        let mut target = None;
        // Which option blocks were written, to refuse one for another type.
        let mut blocks: Vec<(&str, MountKind)> = Vec::new();
        while let Some(key) = next_key::<A, ServiceVolumeKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                ServiceVolumeKey::Type => {
                    kind = value(&mut map, scalar("a mount type", mount_kind))?;
                }
                ServiceVolumeKey::Source => {
                    mount.source =
                        value(&mut map, text("a volume name or a host path"))?.unwrap_or_default();
                }
                ServiceVolumeKey::Target => {
                    target = value(
                        &mut map,
                        scalar("a path inside the container", |t: &str| container_path(t)),
                    )?;
                }
                ServiceVolumeKey::ReadOnly => {
                    mount.read_only =
                        value(&mut map, scalar("`true` or `false`", values::boolean))?
                            .unwrap_or(false);
                }
                ServiceVolumeKey::Bind => {
                    blocks.push(("bind", MountKind::Bind));
                    if let Some((propagation, create, bind_notes)) = value(&mut map, BindSeed)? {
                        mount.bind_propagation = propagation;
                        mount.bind_create_host_path = create;
                        nest(&mut notes, Seg::Key("bind".to_owned()), bind_notes);
                    }
                }
                ServiceVolumeKey::Volume => {
                    blocks.push(("volume", MountKind::Volume));
                    if let Some((nocopy, volume_notes)) = value(&mut map, VolumeOptionsSeed)? {
                        mount.volume_nocopy = nocopy;
                        nest(&mut notes, Seg::Key("volume".to_owned()), volume_notes);
                    }
                }
                ServiceVolumeKey::Tmpfs => {
                    blocks.push(("tmpfs", MountKind::Tmpfs));
                    if let Some((size, mode, tmpfs_notes)) = value(&mut map, TmpfsOptionsSeed)? {
                        mount.tmpfs_size_bytes = size;
                        mount.tmpfs_mode = mode;
                        nest(&mut notes, Seg::Key("tmpfs".to_owned()), tmpfs_notes);
                    }
                }
            }
        }
        let kind = kind.ok_or_else(|| {
            de::Error::custom(
                "missing field `type`: write `type: volume`, `type: bind` or `type: tmpfs`",
            )
        })?;
        mount.kind = kind;
        mount.target = target.ok_or_else(|| {
            de::Error::custom("missing field `target`: the path inside the container")
        })?;
        if let Some((block, _)) = blocks.iter().find(|(_, k)| *k != kind) {
            return Err(de::Error::custom(format!(
                "`{block}` options apply to `type: {block}` only; this mount is `type: {}`",
                kind.as_str()
            )));
        }
        match kind {
            MountKind::Volume => {
                if !mount.source.is_empty() {
                    volume_name(&mount.source).map_err(de::Error::custom)?;
                }
            }
            MountKind::Bind => {
                if mount.source.is_empty() {
                    return Err(de::Error::custom(
                        "missing field `source`: a bind mount names the host path to mount",
                    ));
                }
                mount.source = host_path(&mount.source).map_err(de::Error::custom)?;
            }
            MountKind::Tmpfs => {
                if !mount.source.is_empty() {
                    return Err(de::Error::custom(
                        "a tmpfs mount has no `source`: remove it",
                    ));
                }
            }
        }
        Ok((mount, notes))
    }
}

/// `type`: `volume`, `bind` or `tmpfs`; the others are refused.
fn mount_kind(text: &str) -> Result<MountKind, String> {
    match text {
        "volume" => Ok(MountKind::Volume),
        "bind" => Ok(MountKind::Bind),
        "tmpfs" => Ok(MountKind::Tmpfs),
        "npipe" => Err(
            "`type: npipe` mounts a Windows named pipe; Convoy runs Linux \
                        containers only: remove the mount"
                .to_owned(),
        ),
        "cluster" => Err(
            "`type: cluster` (cluster volumes of Swarm's CSI plugins) is not \
                          supported: use a named volume with a `driver:` the nodes have"
                .to_owned(),
        ),
        "image" => Err(
            "`type: image` (an image's files as a volume) needs Docker Engine 28 \
                        and Convoy supports Docker 20.10: copy the files into the image \
                        or a named volume instead"
                .to_owned(),
        ),
        other => Err(format!(
            "unknown mount type `{other}`, expected `volume`, `bind` or `tmpfs`"
        )),
    }
}

/// The short syntax: `DST` (an anonymous volume), or `SRC:DST[:OPTS]`
/// with `SRC` a host path or a volume key and `OPTS` a comma-separated
/// list of `ro`, `rw`, `nocopy` (volumes) and a propagation (binds).
pub(super) fn short(spec: &str) -> Result<MountSpec, String> {
    let invalid = |why: &str| format!("invalid volume `{spec}`: {why}");
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, options) = match parts.as_slice() {
        [target] => ("", *target, ""),
        [source, target] => (*source, *target, ""),
        [source, target, options] => (*source, *target, *options),
        _ => return Err(invalid("expected `SRC:DST[:ro|rw]` or `DST`")),
    };
    let target = container_path(target).map_err(|why| invalid(&why))?;
    let mut mount = MountSpec {
        target,
        ..MountSpec::default()
    };
    if parts.len() == 1 {
        // An anonymous volume.
    } else if source.is_empty() {
        return Err(invalid("the source is empty"));
    } else if source.starts_with('.') || source.starts_with('~') {
        return Err(invalid(
            "relative host paths are not supported, as containers may run on another machine; \
             use an absolute path or a named volume",
        ));
    } else if source.starts_with('/') {
        mount.kind = MountKind::Bind;
        mount.source = host_path(source).map_err(|why| invalid(&why))?;
        // Docker creates a missing host path for the short syntax.
        mount.bind_create_host_path = true;
    } else {
        volume_name(source).map_err(|why| invalid(&why))?;
        mount.source = source.to_owned();
    }
    if parts.len() == 3 {
        let mut mode = None;
        for option in options.split(',') {
            match option {
                "ro" | "rw" if mode.is_some() => {
                    return Err(invalid("give one mode, `ro` or `rw`"));
                }
                "ro" | "rw" => mode = Some(option == "ro"),
                "nocopy" if mount.kind == MountKind::Volume => mount.volume_nocopy = true,
                "nocopy" => return Err(invalid("`nocopy` applies to volumes, not host paths")),
                "z" | "Z" => {
                    return Err(invalid(
                        "`z` and `Z` relabel the files for SELinux, on the host for a bind \
                         mount, which Convoy does not do: remove the option",
                    ))
                }
                p if PROPAGATIONS.contains(&p) && mount.kind == MountKind::Bind => {
                    mount.bind_propagation = p.to_owned();
                }
                _ => {
                    return Err(invalid(
                        "the mode must be `ro` or `rw` (with `nocopy` for a volume, or a \
                         propagation such as `rshared` for a host path)",
                    ))
                }
            }
        }
        mount.read_only = mode.unwrap_or(false);
    }
    Ok(mount)
}

const PROPAGATIONS: &[&str] = &[
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

fn container_path(target: &str) -> Result<String, String> {
    if target.starts_with('/') && !target.contains('\0') {
        Ok(target.to_owned())
    } else {
        Err(format!(
            "the target inside the container must be an absolute path, not `{target}`"
        ))
    }
}

/// A bind mount's source: an absolute path, normalized; `..` refused.
fn host_path(source: &str) -> Result<String, String> {
    if source.starts_with('.') || source.starts_with('~') {
        return Err(
            "relative host paths are not supported, as containers may run on another \
             machine; use an absolute path or a named volume"
                .to_owned(),
        );
    }
    if source.contains([':', ',']) {
        return Err(format!(
            "host path `{source}` holds `:` or `,`, which Docker's bind syntax cannot carry: \
             mount a directory above it"
        ));
    }
    convoy_api::host_paths::normalize(source)
}

/// A volume's key (in `volumes:` and the services' mounts) or Docker name.
fn volume_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() <= 128;
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*, up to 128 \
             characters); a host path starts with `/`"
        ))
    }
}

/// A mount's `bind:` options: propagation and create_host_path.
struct BindSeed;

impl<'de> DeserializeSeed<'de> for BindSeed {
    type Value = (String, bool, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BindSeed {
    type Value = (String, bool, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping with `propagation` and `create_host_path`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut notes = Vec::new();
        let mut propagation = String::new();
        let mut create = false;
        while let Some(key) = next_key::<A, BindKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                BindKey::Propagation => {
                    propagation = value(
                        &mut map,
                        scalar("a propagation", |p: &str| {
                            if PROPAGATIONS.contains(&p) {
                                Ok(p.to_owned())
                            } else {
                                Err(format!(
                                    "unknown propagation `{p}`, expected one of `{}`",
                                    PROPAGATIONS.join("`, `")
                                ))
                            }
                        }),
                    )?
                    .unwrap_or_default();
                }
                BindKey::CreateHostPath => {
                    create = value(&mut map, scalar("`true` or `false`", values::boolean))?
                        .unwrap_or(false);
                }
            }
        }
        Ok((propagation, create, notes))
    }
}

/// A mount's `volume:` options: nocopy.
struct VolumeOptionsSeed;

impl<'de> DeserializeSeed<'de> for VolumeOptionsSeed {
    type Value = (bool, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for VolumeOptionsSeed {
    type Value = (bool, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping with `nocopy`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut notes = Vec::new();
        let mut nocopy = false;
        while let Some(key) = next_key::<A, MountVolumeKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                MountVolumeKey::Nocopy => {
                    nocopy = value(&mut map, scalar("`true` or `false`", values::boolean))?
                        .unwrap_or(false);
                }
            }
        }
        Ok((nocopy, notes))
    }
}

/// A mount's `tmpfs:` options: size and mode.
struct TmpfsOptionsSeed;

impl<'de> DeserializeSeed<'de> for TmpfsOptionsSeed {
    type Value = (u64, u32, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TmpfsOptionsSeed {
    type Value = (u64, u32, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping with `size` and `mode`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut notes = Vec::new();
        let mut size = 0;
        let mut mode = 0;
        while let Some(key) = next_key::<A, MountTmpfsKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                MountTmpfsKey::Size => {
                    size = value(
                        &mut map,
                        scalar("a size such as `64m`", super::resources::bytes),
                    )?
                    .unwrap_or(0);
                }
                MountTmpfsKey::Mode => {
                    mode = value(&mut map, scalar("a file mode such as `1777`", file_mode))?
                        .unwrap_or(0);
                }
            }
        }
        Ok((size, mode, notes))
    }
}

/// A file mode in octal, as Compose writes it (`1777`, `0o1777`, `0755`).
fn file_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(mode),
        _ => Err(format!(
            "`{text}` is not a file mode: write it in octal, e.g. `1777` or `0o755`"
        )),
    }
}

/// The top-level `volumes:`: each volume by its key, with warnings.
pub(super) struct DeclsSeed;

pub(super) type Decls = (Vec<VolumeDecl>, Vec<Note>);

impl<'de> DeserializeSeed<'de> for DeclsSeed {
    type Value = Decls;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DeclsSeed {
    type Value = Decls;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping from volume names to volumes")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok((Vec::new(), Vec::new()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut decls = Vec::new();
        let mut notes = Vec::new();
        while let Some(key) = map.next_key_seed(scalar("a volume name", |name: &str| {
            volume_name(name)?;
            first_time(&mut seen, name, "volume")?;
            Ok(name.to_owned())
        }))? {
            let (mut decl, decl_notes) =
                value(&mut map, DeclSeed)?.unwrap_or_else(|| (VolumeDecl::default(), Vec::new()));
            nest(&mut notes, Seg::Key(key.clone()), decl_notes);
            decl.key = key;
            decls.push(decl);
        }
        Ok((decls, notes))
    }
}

/// One entry of the top-level `volumes:`.
struct DeclSeed;

impl<'de> DeserializeSeed<'de> for DeclSeed {
    type Value = (VolumeDecl, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DeclSeed {
    type Value = (VolumeDecl, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a volume: a mapping (or nothing, for a local volume)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut notes = Vec::new();
        let mut decl = VolumeDecl::default();
        let mut set_for_creation = Vec::new();
        while let Some(key) = next_key::<A, VolumeKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                VolumeKey::Name => {
                    decl.name = value(
                        &mut map,
                        scalar("a volume name", |n: &str| {
                            volume_name(n).map(|()| n.to_owned())
                        }),
                    )?
                    .unwrap_or_default();
                }
                VolumeKey::External => {
                    decl.external = value(
                        &mut map,
                        scalar(
                            "`true` or `false` (the name of an external volume goes in `name:`)",
                            values::boolean,
                        ),
                    )?
                    .unwrap_or(false);
                }
                VolumeKey::Driver => {
                    decl.driver =
                        value(&mut map, scalar("a volume driver", driver))?.unwrap_or_default();
                    set_for_creation.push("driver");
                }
                VolumeKey::DriverOpts => {
                    decl.driver_opts = value(&mut map, OptionsSeed)?.unwrap_or_default();
                    set_for_creation.push("driver_opts");
                }
                VolumeKey::Labels => {
                    decl.labels = value(&mut map, EntriesSeed::LABELS)?
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.unwrap_or_default()))
                        .collect();
                    set_for_creation.push("labels");
                }
            }
        }
        if decl.external {
            for key in set_for_creation {
                notes.push(Note::new(
                    key,
                    "ignored for an external volume: Convoy neither creates nor changes it",
                ));
            }
            decl.driver.clear();
            decl.driver_opts.clear();
            decl.labels.clear();
        }
        Ok((decl, notes))
    }
}

/// `driver:`: a volume plugin's name (`local` is Docker's own).
fn driver(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 128
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ':'));
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!("`{text}` is not a volume driver name"))
    }
}

/// `driver_opts`: a mapping of option names to values.
struct OptionsSeed;

impl<'de> DeserializeSeed<'de> for OptionsSeed {
    type Value = BTreeMap<String, String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for OptionsSeed {
    type Value = BTreeMap<String, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping from driver options to values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut options = BTreeMap::new();
        while let Some(key) = map.next_key_seed(scalar("an option name", |name: &str| {
            first_time(&mut seen, name, "driver option")?;
            Ok(name.to_owned())
        }))? {
            let val = value(&mut map, text("the option's value"))?.unwrap_or_default();
            options.insert(key, val);
        }
        Ok(options)
    }
}

/// Checks each service's named volumes against the top-level `volumes:`
/// (each must be declared there, as Compose requires) and gives each
/// service the declarations it mounts. Problems name the mount.
pub(super) fn resolve(
    services: &mut [(String, ServiceSpec)],
    declared: &[VolumeDecl],
) -> Vec<Note> {
    let mut problems = Vec::new();
    for (service, spec) in services.iter_mut() {
        let mut used: Vec<VolumeDecl> = Vec::new();
        for (index, mount) in spec.mounts.iter().enumerate() {
            if mount.kind != MountKind::Volume || mount.source.is_empty() {
                continue;
            }
            match declared.iter().find(|d| d.key == mount.source) {
                Some(decl) => {
                    if !used.iter().any(|u| u.key == decl.key) {
                        used.push(decl.clone());
                    }
                }
                None => {
                    problems.push(Note {
                        path: vec![
                            Seg::Key(service.clone()),
                            Seg::Key("volumes".to_owned()),
                            Seg::Index(index),
                        ],
                        message: format!(
                            "volume `{0}` is not declared: declare it under top-level \
                             `volumes:` (`volumes: {{{0}: {{}}}}`), as Compose requires",
                            mount.source
                        ),
                    });
                    break;
                }
            }
        }
        spec.named_volumes = used;
    }
    problems
}

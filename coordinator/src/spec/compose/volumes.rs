//! Volumes: the top-level `volumes:` (what each named volume is) and a
//! service's `volumes` in Compose's short syntax (`SRC:DST[:OPTS]`, or a
//! lone `DST` for an anonymous volume) and long syntax (a mapping with
//! `type`, `source`, `target`, ...). A named volume a service mounts must
//! be declared at the top level, as Compose requires; `resolve` checks
//! that and hands each service the declarations it uses.

mod decls;
mod options;
mod short;

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::keys::{next_key, Seen, ServiceVolumeKey};
use super::seeds::{scalar, text, value};
use super::{nest, Note};
use crate::spec::locate::Seg;
use crate::spec::{values, MountKind, MountSpec};

pub(super) use decls::{resolve, DeclsSeed};
use options::{BindSeed, TmpfsOptionsSeed, VolumeOptionsSeed};
use short::{container_path, host_path, short, volume_name};

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

//! A service's `volumes`: Compose's short syntax, `SRC:DST[:ro|rw]`, with a
//! host path or a named volume as the source.

use serde::de::{DeserializeSeed, Deserializer};

use super::seeds::{list, scalar};
use crate::spec::values;

/// `volumes`: a list of volumes in the short syntax.
pub(super) struct VolumesSeed;

impl<'de> DeserializeSeed<'de> for VolumesSeed {
    type Value = Vec<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        list(
            "a list of volumes in the short syntax `SRC:DST[:ro|rw]`",
            |_| {
                scalar(
                    "a volume in the short syntax `SRC:DST[:ro|rw]`",
                    values::volume,
                )
            },
        )
        .deserialize(d)
    }
}

//! GPU requests: `deploy.resources.reservations.devices` (Compose's device
//! reservations, NVIDIA only) and the service's `gpus:` shorthand
//! (`all`, a count, or a list of device entries with an implicit `gpu`
//! capability). Both become one [`GpuRequest`].

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::keys::{next_key, DeviceKey};
use super::seeds::{list, scalar, text, value};
use crate::spec::resources::GPU_CAPABILITIES;
use crate::spec::{GpuDevices, GpuRequest};

/// The most GPUs one instance may ask for by count (a box has at most 64).
const MAX_GPU_COUNT: u32 = 64;

/// One device entry as written.
#[derive(Default)]
struct Entry {
    driver: Option<String>,
    count: Option<Option<u32>>,
    device_ids: Option<Vec<String>>,
    capabilities: Option<Vec<String>>,
}

/// `count: N` or `count: all` (`None`).
fn count(text: &str) -> Result<Option<u32>, String> {
    let text = text.trim();
    if text == "all" || text == "-1" {
        return Ok(None);
    }
    match text.parse::<u32>() {
        Ok(n) if (1..=MAX_GPU_COUNT).contains(&n) => Ok(Some(n)),
        _ => Err(format!(
            "invalid GPU count `{text}`: write a number from 1 to {MAX_GPU_COUNT}, or `all`"
        )),
    }
}

impl Entry {
    /// The request this entry makes; `implicit_gpu`: `gpus:` entries have
    /// the `gpu` capability without saying it.
    fn request(self, implicit_gpu: bool) -> Result<GpuRequest, String> {
        match self.driver.as_deref() {
            None | Some("nvidia") => {}
            Some(other) => {
                return Err(format!(
                    "driver `{other}` is not supported: Convoy reserves NVIDIA GPUs only \
                     (`driver: nvidia`)"
                ))
            }
        }
        let mut capabilities = match (self.capabilities, implicit_gpu) {
            (Some(caps), _) => caps,
            (None, true) => Vec::new(),
            (None, false) => {
                return Err("missing `capabilities`: Compose requires them; write \
                            `capabilities: [gpu]`"
                    .to_owned())
            }
        };
        if implicit_gpu {
            capabilities.push("gpu".to_owned());
        }
        for cap in &capabilities {
            if !GPU_CAPABILITIES.contains(&cap.as_str()) {
                return Err(format!(
                    "unknown capability `{cap}`: expected some of {}",
                    GPU_CAPABILITIES.join(", ")
                ));
            }
        }
        if !capabilities.iter().any(|c| c == "gpu") {
            return Err(
                "`capabilities` must include `gpu`: Convoy reserves NVIDIA GPUs only".into(),
            );
        }
        capabilities.sort_unstable();
        capabilities.dedup();
        let devices = match (self.count, self.device_ids) {
            (Some(_), Some(_)) => {
                return Err("give `count` or `device_ids`, not both (as Compose requires)".into())
            }
            (Some(Some(n)), None) => GpuDevices::Count(n),
            (Some(None), None) | (None, None) => GpuDevices::All,
            (None, Some(ids)) => {
                if ids.is_empty() {
                    return Err("`device_ids` is empty: name GPUs by index or UUID".into());
                }
                for (i, id) in ids.iter().enumerate() {
                    if id.trim().is_empty() || id.len() > 128 {
                        return Err(format!("`device_ids[{i}]` is not a GPU index or UUID"));
                    }
                    if ids[..i].contains(id) {
                        return Err(format!("`device_ids` names `{id}` twice"));
                    }
                }
                GpuDevices::Ids(ids)
            }
        };
        Ok(GpuRequest {
            devices,
            capabilities,
            shared: false,
        })
    }
}

/// One entry of `devices` (or of `gpus:` as a list).
struct EntrySeed {
    implicit_gpu: bool,
}

impl<'de> DeserializeSeed<'de> for EntrySeed {
    type Value = GpuRequest;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<GpuRequest, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed {
    type Value = GpuRequest;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a device request such as `{driver: nvidia, count: 1, capabilities: [gpu]}`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<GpuRequest, A::Error> {
        let mut seen = super::keys::Seen::default();
        // `DeviceKey` ignores nothing: every key is read or refused.
        let mut notes = Vec::new();
        let mut entry = Entry::default();
        while let Some(key) = next_key::<A, DeviceKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                DeviceKey::Driver => entry.driver = value(&mut map, text("a driver name"))?,
                DeviceKey::Count => {
                    entry.count = value(&mut map, scalar("a number of GPUs, or `all`", count))?
                }
                DeviceKey::DeviceIds => {
                    entry.device_ids = value(
                        &mut map,
                        list("a list of GPU indexes or UUIDs", |_| {
                            text("a GPU index or UUID")
                        }),
                    )?
                }
                DeviceKey::Capabilities => {
                    entry.capabilities = value(
                        &mut map,
                        list("a list of capabilities such as [gpu]", |_| {
                            text("a capability")
                        }),
                    )?
                }
            }
        }
        entry.request(self.implicit_gpu).map_err(de::Error::custom)
    }
}

/// `deploy.resources.reservations.devices`: a list with one NVIDIA entry.
pub(super) struct DevicesSeed;

impl<'de> DeserializeSeed<'de> for DevicesSeed {
    type Value = Option<GpuRequest>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for DevicesSeed {
    type Value = Option<GpuRequest>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a list of device requests such as `[{driver: nvidia, count: 1, capabilities: [gpu]}]`",
        )
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        one_entry(seq, false)
    }
}

/// The single entry of a list of device requests (none: `None`).
fn one_entry<'de, A: SeqAccess<'de>>(
    mut seq: A,
    implicit_gpu: bool,
) -> Result<Option<GpuRequest>, A::Error> {
    let first = seq.next_element_seed(EntrySeed { implicit_gpu })?;
    if first.is_some() && seq.next_element_seed(EntrySeed { implicit_gpu })?.is_some() {
        return Err(de::Error::custom(
            "more than one device request: Convoy takes one GPU request per service; \
             merge them (e.g. one `count`, the capabilities of both)",
        ));
    }
    Ok(first)
}

/// The service's `gpus:`: `all`, a count, or a list of device entries.
pub(super) struct GpusSeed;

impl<'de> DeserializeSeed<'de> for GpusSeed {
    type Value = Option<GpuRequest>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl GpusSeed {
    fn scalar<E: de::Error>(text: &str) -> Result<Option<GpuRequest>, E> {
        let n = count(text).map_err(E::custom)?;
        Ok(Some(GpuRequest {
            devices: n.map_or(GpuDevices::All, GpuDevices::Count),
            capabilities: vec!["gpu".to_owned()],
            shared: false,
        }))
    }
}

impl<'de> Visitor<'de> for GpusSeed {
    type Value = Option<GpuRequest>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("`all`, a number of GPUs, or a list of device requests")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Self::scalar(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Self::scalar(&v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Self::scalar(&v.to_string())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        one_entry(seq, true)
    }
}

#[cfg(test)]
mod tests {
    use crate::spec::{self, GpuDevices, GpuRequest};

    fn gpus(service: &str) -> Result<Option<GpuRequest>, String> {
        let yaml = format!("services:\n  web:\n    image: x\n{service}");
        spec::parse("app.yaml", &yaml)
            .map(|f| f.services["web"].resources.gpus.clone())
            .map_err(|e| e.to_string())
    }

    fn devices(entry: &str) -> Result<Option<GpuRequest>, String> {
        gpus(&format!(
            "    deploy:\n      resources:\n        reservations:\n          devices:\n            - {entry}\n"
        ))
    }

    fn request(devices: GpuDevices, caps: &[&str]) -> Option<GpuRequest> {
        Some(GpuRequest {
            devices,
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            shared: false,
        })
    }

    #[test]
    fn device_reservations_read_count_all_ids_and_capabilities() {
        assert_eq!(
            devices("{driver: nvidia, count: 2, capabilities: [gpu, utility]}"),
            Ok(request(GpuDevices::Count(2), &["gpu", "utility"]))
        );
        assert_eq!(
            devices("{driver: nvidia, count: all, capabilities: [gpu]}"),
            Ok(request(GpuDevices::All, &["gpu"]))
        );
        // No count: every GPU, as Compose reads it; no driver: nvidia.
        assert_eq!(
            devices("{capabilities: [compute, gpu, gpu]}"),
            Ok(request(GpuDevices::All, &["compute", "gpu"]))
        );
        assert_eq!(
            devices("{driver: nvidia, device_ids: ['0', GPU-abc], capabilities: [gpu]}"),
            Ok(request(
                GpuDevices::Ids(vec!["0".into(), "GPU-abc".into()]),
                &["gpu"]
            ))
        );
        assert_eq!(gpus(""), Ok(None));
    }

    #[test]
    fn device_reservations_refuse_what_convoy_cannot_honour() {
        for (entry, why) in [
            (
                "{driver: amd, count: 1, capabilities: [gpu]}",
                "driver `amd` is not supported",
            ),
            ("{count: 1}", "missing `capabilities`"),
            (
                "{count: 1, capabilities: [tpu]}",
                "unknown capability `tpu`",
            ),
            ("{count: 1, capabilities: [compute]}", "must include `gpu`"),
            (
                "{count: 1, device_ids: ['0'], capabilities: [gpu]}",
                "give `count` or `device_ids`, not both",
            ),
            ("{count: 0, capabilities: [gpu]}", "invalid GPU count `0`"),
            (
                "{count: two, capabilities: [gpu]}",
                "invalid GPU count `two`",
            ),
            (
                "{device_ids: [], capabilities: [gpu]}",
                "`device_ids` is empty",
            ),
            (
                "{device_ids: ['1', '1'], capabilities: [gpu]}",
                "names `1` twice",
            ),
            (
                "{count: 1, capabilities: [gpu], options: {a: b}}",
                "options",
            ),
        ] {
            let err = devices(entry).unwrap_err();
            assert!(
                err.contains("services.web.deploy.resources.reservations.devices")
                    && err.contains(why),
                "{entry}: {err}"
            );
        }
        let two = "    deploy:\n      resources:\n        reservations:\n          devices:\n            - {count: 1, capabilities: [gpu]}\n            - {count: 1, capabilities: [gpu]}\n";
        assert!(gpus(two)
            .unwrap_err()
            .contains("more than one device request"));
    }

    #[test]
    fn the_gpus_shorthand_reads_all_a_count_or_entries() {
        assert_eq!(
            gpus("    gpus: all\n"),
            Ok(request(GpuDevices::All, &["gpu"]))
        );
        assert_eq!(
            gpus("    gpus: 2\n"),
            Ok(request(GpuDevices::Count(2), &["gpu"]))
        );
        assert_eq!(
            gpus("    gpus:\n      - driver: nvidia\n        count: 1\n        capabilities: [utility]\n"),
            Ok(request(GpuDevices::Count(1), &["gpu", "utility"]))
        );
        assert!(gpus("    gpus: some\n")
            .unwrap_err()
            .contains("invalid GPU count `some`"));
        let both = "    gpus: 1\n    deploy:\n      resources:\n        reservations:\n          devices:\n            - {count: 1, capabilities: [gpu]}\n";
        assert!(
            gpus(both).unwrap_err().contains("give GPUs in one of"),
            "{:?}",
            gpus(both)
        );
    }

    #[test]
    fn gpu_sharing_is_an_opt_in_of_a_gpu_request() {
        let shared = gpus("    gpus: 1\n    x-convoy:\n      gpu_sharing: true\n").unwrap();
        assert!(shared.unwrap().shared);
        let err = gpus("    x-convoy:\n      gpu_sharing: true\n").unwrap_err();
        assert!(
            err.contains("x-convoy.gpu_sharing") && err.contains("no GPU request"),
            "{err}"
        );
    }

    #[test]
    fn a_gpu_request_changes_the_spec_hash_and_none_leaves_it() {
        let parse = |s: &str| {
            spec::parse("a.yaml", s)
                .unwrap()
                .services
                .remove("web")
                .unwrap()
        };
        let plain = parse("services:\n  web:\n    image: x\n");
        let gpu = parse("services:\n  web:\n    image: x\n    gpus: 1\n");
        assert_ne!(plain.spec_hash(), gpu.spec_hash());
        // Stored specs without GPUs have no `gpus` key: records and hashes stay.
        let json = serde_json::to_string(&plain.resources).unwrap();
        assert!(!json.contains("gpus"), "{json}");
        assert_eq!(spec::changed_fields(&plain, &gpu), ["resources"]);
    }

    #[test]
    fn units_take_gpu_requests_unless_adopted() {
        let yaml = "units:\n  train:\n    exec_start: /usr/bin/train\n    x-convoy:\n      gpu_sharing: true\n    deploy:\n      resources:\n        reservations:\n          devices:\n            - {count: 1, capabilities: [gpu]}\n";
        let file = spec::parse("app.yaml", yaml).unwrap();
        let gpus = file.services["train"].resources.gpus.clone().unwrap();
        assert_eq!((gpus.devices, gpus.shared), (GpuDevices::Count(1), true));
        let adopted = "units:\n  train:\n    unit: train.service\n    deploy:\n      resources:\n        reservations:\n          devices:\n            - {count: 1, capabilities: [gpu]}\n";
        let err = spec::parse("app.yaml", adopted).unwrap_err().to_string();
        assert!(
            err.contains("units.train.deploy") && err.contains("adopted unit cannot reserve GPUs"),
            "{err}"
        );
    }
}

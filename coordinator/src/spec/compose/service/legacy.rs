//! The resource keys `deploy.resources` took over (`cpus`, `mem_limit`,
//! `mem_reservation`, `pids_limit`, `gpus`), merged with it, and
//! `x-convoy.gpu_sharing`.

use crate::spec::compose::{resources, Note};
use crate::spec::locate::Seg;

/// `cpus`, `mem_limit`, `mem_reservation` and `pids_limit`: the keys
/// `deploy.resources` took over, as written.
#[derive(Default)]
pub(super) struct Legacy {
    pub(super) cpus: Option<u64>,
    pub(super) mem_limit: Option<u64>,
    pub(super) mem_reservation: Option<u64>,
    pub(super) pids_limit: Option<u64>,
    /// `gpus:`, Compose's shorthand for a GPU device reservation.
    pub(super) gpus: Option<crate::spec::GpuRequest>,
}

/// `x-convoy.gpu_sharing`: lets the service's GPU request share GPUs.
pub(in crate::spec::compose) fn share_gpus(
    sharing: bool,
    resources: &mut crate::spec::ResourcesSpec,
) -> Result<(), Note> {
    if !sharing {
        return Ok(());
    }
    match resources.gpus.as_mut() {
        Some(gpus) => {
            gpus.shared = true;
            Ok(())
        }
        None => Err(Note {
            path: vec![
                Seg::Key("x-convoy".to_owned()),
                Seg::Key("gpu_sharing".to_owned()),
            ],
            message: "the service makes no GPU request to share: add `gpus:` or \
                      `deploy.resources.reservations.devices`, or remove `gpu_sharing`"
                .to_owned(),
        }),
    }
}

impl Legacy {
    /// Sets `into`'s limits and reservations from `deploy.resources` and the
    /// older keys; the two may both be written only with the same value,
    /// as Compose requires.
    pub(super) fn merge(
        self,
        deploy: Option<resources::Resources>,
        into: &mut crate::spec::ResourcesSpec,
    ) -> Result<(), Note> {
        let deploy = deploy.unwrap_or_default();
        let pick = |old: Option<u64>, key: &str, new: u64, new_key: &str| match old {
            Some(old) if new != 0 && old != new => Err(Note::new(
                key,
                format!("differs from `deploy.resources.{new_key}`: keep one of the two"),
            )),
            Some(old) => Ok(old),
            None => Ok(new),
        };
        into.cpu_limit_nanos = pick(self.cpus, "cpus", deploy.cpu_limit_nanos, "limits.cpus")?;
        into.memory_limit_bytes = pick(
            self.mem_limit,
            "mem_limit",
            deploy.memory_limit_bytes,
            "limits.memory",
        )?;
        into.pids_limit = pick(
            self.pids_limit,
            "pids_limit",
            deploy.pids_limit,
            "limits.pids",
        )?;
        into.memory_reservation_bytes = pick(
            self.mem_reservation,
            "mem_reservation",
            deploy.memory_reservation_bytes,
            "reservations.memory",
        )?;
        into.cpu_reservation_nanos = deploy.cpu_reservation_nanos;
        into.gpus = match (self.gpus, deploy.gpus) {
            (Some(_), Some(_)) => {
                return Err(Note::new(
                    "gpus",
                    "give GPUs in one of `gpus` and `deploy.resources.reservations.devices`, \
                     not both",
                ))
            }
            (a, b) => a.or(b),
        };
        if into.memory_limit_bytes != 0 && into.memory_reservation_bytes > into.memory_limit_bytes {
            return Err(Note::new(
                "deploy",
                "the memory reservation is above the memory limit: an instance could never \
                 use what is set aside for it",
            ));
        }
        Ok(())
    }
}

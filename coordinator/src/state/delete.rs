//! `delete`: a service's instances are removed; its revisions stay in
//! history.

use super::*;

impl Coordinator {
    /// Removes every instance of a service; its revisions stay in history.
    pub async fn delete(&self, service: &str, env: &str) -> Result<Deleted, StateError> {
        let env = if env.is_empty() { DEFAULT_ENV } else { env };
        let mut txn = self.begin("delete").await;
        let key = (env.to_string(), service.to_string());
        let Some(rec) = txn.desired().services.get(&key).filter(|r| !r.deleted) else {
            return Err(StateError::ServiceNotFound {
                service: service.to_string(),
                env: env.to_string(),
            });
        };
        let removed = rec.assignments.len() as u32;
        let last_revision = rec.revision;
        let frees_room = placement::Capacity::needs_room(&rec.spec);
        let connected = self.connected();
        let (next, ops, events) = txn.parts();
        if let Some(rec) = next.services.get_mut(&key) {
            let rec = Arc::make_mut(rec);
            rec.deleted = true;
            rec.assignments.clear();
            rec.gpus.clear();
            rec.updated_unix_ms = now_unix_ms();
            ops.push(Op::put_json(service_key(env, service), &*rec));
        }
        // What it reserved is free again: instances waiting for room may
        // have it now (placed ones never move).
        if frees_room {
            super::register::replace_all(next, &connected, ops);
        }
        events.push(
            Ev::new(EventKind::ServiceDeleted)
                .service(env, service)
                .msg(format!(
                    "{env}/{service} deleted ({removed} instances removed)"
                ))
                .field("revision", last_revision),
        );
        txn.replan();
        txn.commit().await?;
        Ok(Deleted {
            removed_instances: removed,
            last_revision,
        })
    }
}

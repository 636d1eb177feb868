//! `convoy notify add|ls|rm|test` (docs/NOTIFY.md): webhook notifiers.
//! Admin only (the coordinator makes requests to the URLs they name);
//! every write and test is audited by name and URL, refused or not. The
//! signing secret is never answered, logged or put in an error.

use super::*;
use crate::notify::LaneInfo;
use crate::secrets::Secret;
use crate::state::{NewNotifier, NotifierTarget};

fn info(t: &NotifierTarget, lane: LaneInfo) -> pb::NotifierInfo {
    pb::NotifierInfo {
        name: t.name.clone(),
        url: t.url.clone(),
        events: t.events.clone(),
        format: t.format.word().to_string(),
        signed: t.secret.is_some(),
        created_by: t.created_by.clone(),
        created_unix_ms: t.created_unix_ms,
        queued: lane.queued,
        delivered: lane.delivered,
        last_delivered_unix_ms: lane.last_delivered_unix_ms,
        last_error: lane.last_error,
    }
}

impl ControlApi {
    fn lane(&self, name: &str) -> LaneInfo {
        self.notifier
            .as_ref()
            .map(|n| n.info(name))
            .unwrap_or_default()
    }

    pub(super) async fn notifier_add(
        &self,
        req: Request<pb::AddNotifierRequest>,
    ) -> Result<Response<pb::NotifierInfo>, Status> {
        let caller = caller(&req)?;
        let pb::AddNotifierRequest {
            name,
            url,
            events,
            format,
            signing_secret,
            replace,
        } = req.into_inner();
        // Held as a secret at once: zeroed when dropped, never printed.
        let secret = Secret::new(signing_secret.into_bytes());
        let target = format!("{name} ({url})");
        self.allow(&caller, Action::Notify, &target, true).await?;
        let added = self
            .coord
            .add_notifier(
                NewNotifier {
                    name,
                    url,
                    events,
                    format,
                    secret: (!secret.expose().is_empty()).then_some(secret),
                    replace,
                },
                &caller.who(),
            )
            .await
            .map_err(Status::from);
        let outcome = match &added {
            Ok(_) => "ok".to_string(),
            Err(s) => s.message().to_string(),
        };
        self.audit
            .record(&caller.who(), "notify.add", &target, &outcome)
            .await;
        let added = added?;
        Ok(Response::new(info(&added, self.lane(&added.name))))
    }

    pub(super) async fn notifier_list(
        &self,
        req: Request<pb::ListNotifiersRequest>,
    ) -> Result<Response<pb::ListNotifiersResponse>, Status> {
        let caller = caller(&req)?;
        let pb::ListNotifiersRequest {} = req.into_inner();
        self.allow(&caller, Action::Notify, "notifiers", false)
            .await?;
        let targets = self.coord.notifier_targets().borrow().clone();
        Ok(Response::new(pb::ListNotifiersResponse {
            notifiers: targets
                .values()
                .map(|t| info(t, self.lane(&t.name)))
                .collect(),
        }))
    }

    pub(super) async fn notifier_remove(
        &self,
        req: Request<pb::RemoveNotifierRequest>,
    ) -> Result<Response<pb::NotifierInfo>, Status> {
        let caller = caller(&req)?;
        let pb::RemoveNotifierRequest { name } = req.into_inner();
        self.allow(&caller, Action::Notify, &name, true).await?;
        let lane = self.lane(&name);
        let removed = self
            .coord
            .remove_notifier(&name)
            .await
            .map_err(Status::from);
        let outcome = match &removed {
            Ok(_) => "ok".to_string(),
            Err(s) => s.message().to_string(),
        };
        self.audit
            .record(&caller.who(), "notify.remove", &name, &outcome)
            .await;
        Ok(Response::new(info(&removed?, lane)))
    }

    pub(super) async fn notifier_test(
        &self,
        req: Request<pb::TestNotifierRequest>,
    ) -> Result<Response<pb::TestNotifierResponse>, Status> {
        let caller = caller(&req)?;
        let pb::TestNotifierRequest { name } = req.into_inner();
        self.allow(&caller, Action::Notify, &name, true).await?;
        let target = self.coord.notifier_targets().borrow().get(&name).cloned();
        let answered = match (target, &self.notifier) {
            (None, _) => Err(Status::from(crate::state::StateError::NotifierNotFound(
                name.clone(),
            ))),
            (Some(_), None) => Err(Status::unavailable(
                "this coordinator does not deliver notifications",
            )),
            (Some(t), Some(n)) => Ok(n.test(&t, &caller.who()).await),
        };
        let outcome = match &answered {
            Ok(a) if a.status == 0 => a.error.clone(),
            Ok(a) => format!("HTTP {}", a.status),
            Err(s) => s.message().to_string(),
        };
        self.audit
            .record(&caller.who(), "notify.test", &name, &outcome)
            .await;
        let a = answered?;
        Ok(Response::new(pb::TestNotifierResponse {
            status: u32::from(a.status),
            error: a.error,
            duration_ms: a.duration.as_millis() as u64,
        }))
    }
}

//! The calls of `convoy notify ...`.

use anyhow::Result;
use convoy_proto as pb;

use super::Coordinator;

impl Coordinator {
    pub async fn add_notifier(
        &mut self,
        request: pb::AddNotifierRequest,
    ) -> Result<pb::NotifierInfo> {
        self.call(request, |mut c, r| async move { c.add_notifier(r).await })
            .await
    }

    pub async fn list_notifiers(&mut self) -> Result<pb::ListNotifiersResponse> {
        self.call(pb::ListNotifiersRequest {}, |mut c, r| async move {
            c.list_notifiers(r).await
        })
        .await
    }

    pub async fn remove_notifier(&mut self, name: String) -> Result<pb::NotifierInfo> {
        self.call(pb::RemoveNotifierRequest { name }, |mut c, r| async move {
            c.remove_notifier(r).await
        })
        .await
    }

    pub async fn test_notifier(&mut self, name: String) -> Result<pb::TestNotifierResponse> {
        self.call(pb::TestNotifierRequest { name }, |mut c, r| async move {
            c.test_notifier(r).await
        })
        .await
    }
}

//! The calls of `convoy secret ...`.

use anyhow::Result;
use convoy_proto as pb;

use super::Coordinator;

impl Coordinator {
    pub async fn set_secret(&mut self, request: pb::SetSecretRequest) -> Result<pb::SecretInfo> {
        self.call(request, |mut c, r| async move { c.set_secret(r).await })
            .await
    }

    pub async fn generate_secret(
        &mut self,
        request: pb::GenerateSecretRequest,
    ) -> Result<pb::SecretInfo> {
        self.call(
            request,
            |mut c, r| async move { c.generate_secret(r).await },
        )
        .await
    }

    pub async fn list_secrets(&mut self, env: String) -> Result<pb::ListSecretsResponse> {
        self.call(pb::ListSecretsRequest { env }, |mut c, r| async move {
            c.list_secrets(r).await
        })
        .await
    }

    pub async fn secret_history(
        &mut self,
        env: String,
        name: String,
    ) -> Result<pb::SecretHistoryResponse> {
        self.call(
            pb::SecretHistoryRequest { env, name },
            |mut c, r| async move { c.secret_history(r).await },
        )
        .await
    }

    pub async fn remove_secret(&mut self, env: String, name: String) -> Result<pb::SecretInfo> {
        self.call(
            pb::RemoveSecretRequest { env, name },
            |mut c, r| async move { c.remove_secret(r).await },
        )
        .await
    }
}

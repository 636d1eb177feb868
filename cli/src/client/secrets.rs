//! The calls of `convoy secret ...`.

use anyhow::Result;
use convoy_proto as pb;

use super::{finish, Coordinator};

impl Coordinator {
    pub async fn set_secret(&mut self, request: pb::SetSecretRequest) -> Result<pb::SecretInfo> {
        finish(&self.address, self.client.set_secret(request)).await
    }

    pub async fn generate_secret(
        &mut self,
        request: pb::GenerateSecretRequest,
    ) -> Result<pb::SecretInfo> {
        finish(&self.address, self.client.generate_secret(request)).await
    }

    pub async fn list_secrets(&mut self, env: String) -> Result<pb::ListSecretsResponse> {
        finish(
            &self.address,
            self.client.list_secrets(pb::ListSecretsRequest { env }),
        )
        .await
    }

    pub async fn secret_history(
        &mut self,
        env: String,
        name: String,
    ) -> Result<pb::SecretHistoryResponse> {
        finish(
            &self.address,
            self.client
                .secret_history(pb::SecretHistoryRequest { env, name }),
        )
        .await
    }

    pub async fn remove_secret(&mut self, env: String, name: String) -> Result<pb::SecretInfo> {
        finish(
            &self.address,
            self.client
                .remove_secret(pb::RemoveSecretRequest { env, name }),
        )
        .await
    }
}

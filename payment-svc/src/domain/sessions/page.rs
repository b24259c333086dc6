//! What the binding page needs beyond the merchants' API: a session found
//! by its id alone (a shopper's browser carries no certificate), with the
//! merchant that opened it.
use std::sync::Arc;

use paybind_shared::ids::SessionId;

use super::SessionView;
use crate::domain::{
    error::{DomainError, DomainResult},
    merchants::{Merchant, MerchantStatus},
    Services,
};

impl Services {
    /// The session a page URL names, with its merchant. A disabled
    /// merchant's sessions are refused as the API refuses the merchant.
    pub async fn page_session(
        &self,
        session_id: &SessionId,
    ) -> DomainResult<(Arc<Merchant>, SessionView)> {
        let session = self
            .store
            .find_session(session_id)
            .await?
            .ok_or(DomainError::SessionNotFound)?;
        let merchant = self
            .store
            .get_merchant(&session.merchant_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("session {} has no merchant", session.id))?;
        if let MerchantStatus::Disabled { .. } = merchant.status {
            return Err(DomainError::MerchantDisabled);
        }
        Ok((Arc::new(merchant), self.session_view(session).await?))
    }
}

//! Reading a session, with what it refers to.
use paybind_shared::{clock::now_ms, ids::SessionId};

use super::SessionView;
use crate::domain::{error::DomainResult, merchants::Merchant, model::BindSession, Services};

impl Services {
    pub async fn get_session(
        &self,
        merchant: &Merchant,
        session_id: &SessionId,
    ) -> DomainResult<SessionView> {
        let session = self.load_session(merchant, session_id).await?;
        self.session_view(session).await
    }

    /// The session with what it refers to (binding with token, payment).
    pub async fn session_view(&self, session: BindSession) -> DomainResult<SessionView> {
        let binding = match session.binding_id() {
            Some(id) => match self.store.get_binding(&session.merchant_id, id).await? {
                Some(b) => Some(self.binding_view(b)?),
                None => None,
            },
            None => None,
        };
        let payment = match session.payment_id() {
            Some(id) => self.store.get_payment(&session.merchant_id, id).await?,
            None => None,
        };
        Ok(SessionView {
            status: session.status_at(now_ms()),
            page_url: format!(
                "{}/bind/{}",
                self.policy.public_base_url.trim_end_matches('/'),
                session.id
            ),
            session,
            binding,
            payment,
        })
    }
}

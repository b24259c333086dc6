//! Bind sessions the shop started: learning their outcome from payment-svc
//! and applying it (the card on file, the order), and direct entry.
use paybind_shared::{
    ids::{MerchantUserId, SessionId},
    model::SessionStatus,
};

use super::{
    model::{Order, OrderStatus, OrderUpdate, User},
    payment::{PaymentError, SessionInfo, ShopperEntry},
    Shop, ShopError, ShopResult,
};

/// What applying a session's outcome left: the user (with the card on
/// file if it bound), its order (BindAndPay), and the session's status.
pub struct SessionOutcome {
    pub user: User,
    pub order: Option<Order>,
    pub status: SessionStatus,
}

impl Shop {
    async fn session_user(&self, session_id: &SessionId) -> ShopResult<MerchantUserId> {
        self.store
            .session_user(session_id)
            .await?
            .ok_or(ShopError::SessionNotFound)
    }

    /// Learns a bind session's outcome from payment-svc and applies it.
    pub async fn complete_session(&self, session_id: &SessionId) -> ShopResult<SessionOutcome> {
        let user_id = self.session_user(session_id).await?;
        let session = self.payments.get_session(session_id).await?;
        self.apply_session(&user_id, session).await
    }

    async fn apply_session(
        &self,
        user_id: &MerchantUserId,
        session: SessionInfo,
    ) -> ShopResult<SessionOutcome> {
        let order = self.store.order_by_session(&session.id).await?;
        let order = match session.status {
            SessionStatus::Completed => {
                if let Some(binding) = &session.binding {
                    self.keep_card(user_id, binding).await?;
                }
                match (order, &session.payment) {
                    (Some(order), Some(payment)) => {
                        let update = OrderUpdate {
                            payment_id: Some(payment.id.clone()),
                            ..OrderUpdate::to(OrderStatus::Paid)
                        };
                        let from = [OrderStatus::AwaitingShopper, OrderStatus::PendingPayment];
                        match self.transition(&order.id, &from, update).await? {
                            Some(o) => Some(o),
                            None => Some(self.order(&order.id).await?),
                        }
                    }
                    (order, _) => order,
                }
            }
            status @ (SessionStatus::Failed | SessionStatus::Expired) => match order {
                Some(order) => {
                    let reason = if status == SessionStatus::Expired {
                        "SESSION_EXPIRED"
                    } else {
                        "SESSION_FAILED"
                    };
                    let update = OrderUpdate {
                        decline_reason: Some(reason.into()),
                        ..OrderUpdate::to(OrderStatus::Cancelled)
                    };
                    self.transition(&order.id, &[OrderStatus::AwaitingShopper], update)
                        .await?;
                    Some(self.order(&order.id).await?)
                }
                None => None,
            },
            SessionStatus::Open | SessionStatus::AwaitingVerification => order,
        };
        Ok(SessionOutcome {
            user: self.user(user_id).await?,
            order,
            status: session.status,
        })
    }

    /// Direct entry: the shopper's information, forwarded.
    pub async fn submit_shopper_info(
        &self,
        session_id: &SessionId,
        entry: ShopperEntry,
    ) -> ShopResult<SessionInfo> {
        self.session_user(session_id).await?;
        Ok(self.payments.submit_entry(session_id, entry).await?)
    }

    /// Direct entry: the shopper's code, forwarded; then the session is
    /// completed as `complete_session` does — also when the code ended it
    /// in failure (a card declined on the last attempt, the last wrong
    /// code): the order is cancelled at once, and the refusal passed on.
    pub async fn verify_shopper_code(
        &self,
        session_id: &SessionId,
        code: &str,
    ) -> ShopResult<SessionOutcome> {
        let user_id = self.session_user(session_id).await?;
        match self.payments.verify_code(session_id, code).await {
            Ok(session) => self.apply_session(&user_id, session).await,
            Err(refused @ PaymentError::Refused(_)) => {
                match self.payments.get_session(session_id).await {
                    Ok(session) => {
                        self.apply_session(&user_id, session).await?;
                    }
                    Err(e) => {
                        // The order is settled when the session is next read.
                        tracing::warn!(%session_id, error = %e, "could not read the session after a refused code");
                    }
                }
                Err(refused.into())
            }
            Err(e) => Err(e.into()),
        }
    }
}

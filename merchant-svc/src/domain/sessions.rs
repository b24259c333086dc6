//! Bind sessions the shop started: learning their outcome from payment-svc
//! and applying it (the card on file, the order) — when the shopper comes
//! back, and on the shop's own for those who never do — and direct entry.
use paybind_shared::{
    clock::now_ms,
    ids::{MerchantUserId, SessionId},
    model::{BindingStatus, SessionStatus},
};

use super::{
    model::{Order, OrderStatus, OrderUpdate, SessionEnd, User},
    payment::{PaymentError, SessionInfo, ShopperEntry},
    Shop, ShopError, ShopResult,
};

/// Sessions are checked for a day at most: payment-svc's last far less
/// (15 minutes by default), so one still open after that is never going
/// to end (payment-svc lost it, or its clock is far off).
const CHECK_SESSIONS_FOR_MS: i64 = 24 * 60 * 60 * 1000;

/// The longest wait between two checks of one session.
const MAX_CHECK_INTERVAL_MS: i64 = 60_000;

/// Sessions checked in one pass at most.
const CHECKS_PER_PASS: i64 = 50;

/// When to check a session again: soon while it is young (the shopper is
/// likely on the page now), then less and less often (a quarter of its
/// age, at most once a minute), so an abandoned session costs a few dozen
/// reads in its life.
fn next_check_ms(now_ms: i64, created_ms: i64, min_interval_ms: i64) -> i64 {
    let age = (now_ms - created_ms).max(0);
    let wait = (age / 4).clamp(min_interval_ms, MAX_CHECK_INTERVAL_MS.max(min_interval_ms));
    now_ms + wait
}

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

    /// A session `user_id` started, as payment-svc has it now (its page,
    /// its status): `SessionNotFound` for anyone else's.
    pub async fn session_of(
        &self,
        user_id: &MerchantUserId,
        session_id: &SessionId,
    ) -> ShopResult<SessionInfo> {
        if &self.session_user(session_id).await? != user_id {
            return Err(ShopError::SessionNotFound);
        }
        Ok(self.payments.get_session(session_id).await?)
    }

    /// One pass of the session check: every session the shop started and
    /// has not applied an outcome to (the shopper closed the page, or never
    /// came back to the shop) is read at payment-svc once it is due, and an
    /// ended one applied as `complete_session` does — the BindAndPay order
    /// paid or cancelled, a bound card kept. Returns how many ended.
    pub async fn check_sessions(&self, min_interval_ms: i64) -> ShopResult<usize> {
        let now = now_ms();
        let due = self
            .store
            .sessions_due(now, now - CHECK_SESSIONS_FOR_MS, CHECKS_PER_PASS)
            .await?;
        let mut ended = 0;
        for open in due {
            match self.payments.get_session(&open.id).await {
                Ok(session) => {
                    let status = session.status;
                    self.apply_session(&open.user_id, session).await?;
                    if SessionEnd::of(status).is_some() {
                        ended += 1;
                        tracing::info!(session_id = %open.id, ?status, "session settled by the shop's own check");
                        continue;
                    }
                }
                Err(PaymentError::Refused(refusal)) => {
                    // payment-svc does not know it (or refuses to say):
                    // asked again, rarely, until the day is over.
                    tracing::warn!(session_id = %open.id, reason = %refusal.reason, "session check refused");
                }
                Err(e) => {
                    // payment-svc is down: the rest of the pass would fail too.
                    tracing::warn!(error = %e, "session check: payment-svc unavailable");
                    break;
                }
            }
            let next = next_check_ms(now_ms(), open.created_ms, min_interval_ms);
            self.store.set_session_next_check(&open.id, next).await?;
        }
        Ok(ended)
    }

    async fn apply_session(
        &self,
        user_id: &MerchantUserId,
        session: SessionInfo,
    ) -> ShopResult<SessionOutcome> {
        let order = self.store.order_by_session(&session.id).await?;
        let order = match session.status {
            SessionStatus::Completed => {
                // A binding revoked since (the session is read again by the
                // shop's own check, maybe long after) is not put back.
                let active = session
                    .binding
                    .as_ref()
                    .filter(|b| b.status == BindingStatus::Active);
                if let Some(binding) = active {
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
        if let Some(end) = SessionEnd::of(session.status) {
            // Applied: the shop's own check need not read it again.
            self.store.set_session_outcome(&session.id, end).await?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn young_sessions_are_checked_often_old_ones_rarely() {
        let min = 2_000;
        assert_eq!(next_check_ms(10_000, 9_000, min), 12_000);
        assert_eq!(next_check_ms(100_000, 0, min), 125_000);
        assert_eq!(next_check_ms(1_000_000, 0, min), 1_060_000);
        // A clock that went back is not a negative wait.
        assert_eq!(next_check_ms(0, 5_000, min), 2_000);
        // A settle interval above the cap is kept.
        assert_eq!(next_check_ms(0, 0, 90_000), 90_000);
    }

    use crate::domain::{fake, model::OrderStatus, CheckoutInput, NewUser};
    use paybind_shared::{
        ids::IdempotencyKey,
        model::Presentation,
        money::{Currency, Money},
    };

    async fn user(shop: &Shop, id: &str) -> MerchantUserId {
        let id = MerchantUserId::parse(id).expect("id");
        shop.create_user(NewUser {
            id: id.clone(),
            display_name: "Zhang San".into(),
            phone: None,
        })
        .await
        .expect("user");
        id
    }

    async fn bind_and_pay(shop: &Shop, user: &MerchantUserId, key: &str) -> Order {
        let order = shop
            .checkout(CheckoutInput {
                user_id: user.clone(),
                amount: Money::new(80_000, Currency::parse("CNY").expect("CNY")).expect("amount"),
                description: "A teapot".into(),
                presentation: Presentation::Popup,
                return_url: String::new(),
                idempotency_key: IdempotencyKey::parse(key).expect("key"),
            })
            .await
            .expect("checkout");
        assert_eq!(order.status, OrderStatus::AwaitingShopper);
        order
    }

    #[tokio::test]
    async fn an_order_whose_shopper_never_came_back_is_settled_by_the_shop() {
        let (shop, payments, _dir) = fake::shop().await;
        let bob = user(&shop, "bob").await;
        let order = bind_and_pay(&shop, &bob, "k1").await;
        let session = order.page.clone().expect("page").session_id;

        // Still open at payment-svc: checked, nothing changes.
        assert_eq!(shop.check_sessions(1).await.expect("pass"), 0);
        assert_eq!(
            shop.order(&order.id).await.expect("order").status,
            OrderStatus::AwaitingShopper
        );

        // The shopper finished the page and closed the window: the next
        // due check pays the order and keeps the card.
        payments.complete(&session);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        assert_eq!(shop.check_sessions(1).await.expect("pass"), 1);
        let paid = shop.order(&order.id).await.expect("order");
        assert_eq!(paid.status, OrderStatus::Paid);
        assert!(paid.payment_id.is_some());
        let card = shop
            .user(&bob)
            .await
            .expect("user")
            .card
            .expect("card on file");
        assert_eq!(card.last4, "4242");

        // Applied once: never read again.
        let reads = payments.reads();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        assert_eq!(shop.check_sessions(1).await.expect("pass"), 0);
        assert_eq!(payments.reads(), reads);
    }

    #[tokio::test]
    async fn an_expired_or_failed_session_cancels_its_order() {
        let (shop, payments, _dir) = fake::shop().await;
        let bob = user(&shop, "bob").await;
        let expired = bind_and_pay(&shop, &bob, "k1").await;
        let failed = bind_and_pay(&shop, &bob, "k2").await;
        payments.end(
            &expired.page.clone().expect("page").session_id,
            SessionStatus::Expired,
        );
        payments.end(
            &failed.page.clone().expect("page").session_id,
            SessionStatus::Failed,
        );
        assert_eq!(shop.check_sessions(1).await.expect("pass"), 2);
        for (order, reason) in [(expired, "SESSION_EXPIRED"), (failed, "SESSION_FAILED")] {
            let order = shop.order(&order.id).await.expect("order");
            assert_eq!(order.status, OrderStatus::Cancelled);
            assert_eq!(order.decline_reason.as_deref(), Some(reason));
        }
        assert!(shop.user(&bob).await.expect("user").card.is_none());
    }

    #[tokio::test]
    async fn a_bind_session_completed_elsewhere_puts_the_card_on_file() {
        let (shop, payments, _dir) = fake::shop().await;
        let carol = user(&shop, "carol").await;
        let session = shop
            .start_binding(&carol, Presentation::Embedded, "")
            .await
            .expect("session");
        payments.complete(&session.id);
        assert_eq!(shop.check_sessions(1).await.expect("pass"), 1);
        assert!(shop.user(&carol).await.expect("user").card.is_some());
    }

    #[tokio::test]
    async fn a_session_the_shopper_completed_is_not_checked_again() {
        let (shop, payments, _dir) = fake::shop().await;
        let carol = user(&shop, "carol").await;
        let session = shop
            .start_binding(&carol, Presentation::Redirect, "")
            .await
            .expect("session");
        payments.complete(&session.id);
        shop.complete_session(&session.id).await.expect("complete");
        let reads = payments.reads();
        assert_eq!(shop.check_sessions(1).await.expect("pass"), 0);
        assert_eq!(payments.reads(), reads);
    }

    #[tokio::test]
    async fn a_binding_revoked_since_is_not_put_back() {
        let (shop, payments, _dir) = fake::shop().await;
        let carol = user(&shop, "carol").await;
        let session = shop
            .start_binding(&carol, Presentation::Redirect, "")
            .await
            .expect("session");
        payments.complete(&session.id);
        shop.complete_session(&session.id).await.expect("complete");
        shop.remove_card(&carol).await.expect("removed");
        // The shopper opens the way back again (a reload, the history):
        // the session's binding is revoked now, and stays off file.
        shop.complete_session(&session.id).await.expect("again");
        assert!(shop.user(&carol).await.expect("user").card.is_none());
    }
}

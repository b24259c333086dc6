//! Checkout: the shop looks the user up in its own database and either pays
//! with the stored token (no authentication) or sends the second binding
//! request, BindAndPay. Every call to payment-svc for an order carries the
//! order's own idempotency key, so sending it again — a retry, the settler
//! after an outage — can never charge twice.
use paybind_shared::{
    clock::now_ms,
    fields::Invalid,
    ids::{IdempotencyKey, MerchantUserId, OrderId},
    model::{PaymentStatus, Presentation},
    money::Money,
};
use sha2::{Digest, Sha256};

use super::{
    model::{CardOnFile, Order, OrderStatus, OrderTransition, OrderUpdate, ShopperPage, User},
    payment::{BindingRequest, PaymentError, Purchase, TokenPayment},
    users::prefill,
    Shop, ShopError, ShopResult,
};

/// A Checkout request, parsed.
#[derive(Debug, Clone)]
pub struct CheckoutInput {
    pub user_id: MerchantUserId,
    pub amount: Money,
    pub description: String,
    pub presentation: Presentation,
    /// Empty: the shop's default.
    pub return_url: String,
    pub idempotency_key: IdempotencyKey,
}

/// The key payment-svc sees for everything done for one order.
fn order_key(order_id: &OrderId) -> IdempotencyKey {
    IdempotencyKey::derived(format!("order:{order_id}"))
}

/// The presentation as the request hash has always spelled it, so a retry
/// of an order made by an earlier release still matches.
fn hashed_name(p: Presentation) -> &'static str {
    match p {
        Presentation::Redirect => "PRESENTATION_REDIRECT",
        Presentation::Embedded => "PRESENTATION_EMBEDDED",
        Presentation::Popup => "PRESENTATION_POPUP",
    }
}

impl Shop {
    pub async fn checkout(&self, input: CheckoutInput) -> ShopResult<Order> {
        let user = self.user(&input.user_id).await?;
        if input.amount.currency() != self.currency {
            return Err(Invalid::new(
                "CURRENCY_NOT_ACCEPTED",
                format!("this shop sells in {}", self.currency),
            )
            .at("amount.currency")
            .into());
        }
        let return_url = self.return_url(&input.return_url);
        let request_hash = hex::encode(Sha256::digest(
            format!(
                "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
                user.id,
                input.amount.amount_minor(),
                input.amount.currency(),
                input.description,
                hashed_name(input.presentation),
                return_url
            )
            .as_bytes(),
        ));
        let now = now_ms();
        let order = Order {
            id: OrderId::generate(),
            user_id: user.id.clone(),
            amount: input.amount,
            description: input.description,
            status: OrderStatus::PendingPayment,
            decline_reason: None,
            payment_id: None,
            refunded_minor: 0,
            page: None,
            paid_with_card_on_file: false,
            presentation: input.presentation,
            return_url,
            idempotency_key: input.idempotency_key,
            request_hash: request_hash.clone(),
            created_ms: now,
            updated_ms: now,
        };
        let (order, new) = self.order_inserts.submit(order).await?;
        if !new {
            if order.request_hash != request_hash {
                return Err(ShopError::IdempotencyKeyReused);
            }
            if order.status != OrderStatus::PendingPayment {
                return Ok(order);
            }
        }
        tracing::info!(order_id = %order.id, user_id = %user.id, new, "checkout");
        // The user just read is the order's (its request hash names them).
        self.settle_for(order, &user).await
    }

    /// Takes a PENDING_PAYMENT order as far as it can go now.
    pub async fn settle(&self, order: Order) -> ShopResult<Order> {
        let user = self.user(&order.user_id).await?;
        self.settle_for(order, &user).await
    }

    /// `settle` with the order's user at hand.
    async fn settle_for(&self, order: Order, user: &User) -> ShopResult<Order> {
        if let Some(card) = &user.card {
            match self.pay_with_card_on_file(&order, user, card).await? {
                Some(settled) => return Ok(settled),
                None => {
                    // The binding is gone at payment-svc: forget it and ask
                    // the shopper to bind again, paying this order.
                    self.store.clear_card_if(&user.id, &card.binding_id).await?;
                }
            }
        }
        self.send_bind_and_pay(&order, user).await
    }

    /// `Ok(None)` when the binding no longer works (revoked, unknown).
    async fn pay_with_card_on_file(
        &self,
        order: &Order,
        user: &User,
        card: &CardOnFile,
    ) -> ShopResult<Option<Order>> {
        // Until its outcome is written below, the payment's event (pushed
        // or streamed, often before Pay's answer is) waits for this
        // checkout, then finds the order settled (or settles it, if the
        // checkout could not).
        let _paying = self.paying.turn(order.id.as_str()).await;
        let result = self
            .payments
            .pay(TokenPayment {
                token: card.token.clone(),
                user_id: user.id.clone(),
                order_id: order.id.clone(),
                amount: order.amount,
                description: order.description.clone(),
                idempotency_key: order_key(&order.id),
            })
            .await;
        let update = match result {
            Ok(payment) if payment.status == PaymentStatus::Pending => {
                // Not settled yet at payment-svc: keep the order for the settler.
                return Err(ShopError::PaymentUnavailable {
                    order_id: Some(order.id.clone()),
                });
            }
            Ok(payment) => {
                let paid = payment.status == PaymentStatus::Succeeded;
                OrderUpdate {
                    decline_reason: (!paid).then(|| payment.decline_reason.clone()),
                    payment_id: Some(payment.id),
                    paid_with_card_on_file: true,
                    ..OrderUpdate::to(if paid {
                        OrderStatus::Paid
                    } else {
                        OrderStatus::Declined
                    })
                }
            }
            Err(e) => match e.refusal_reason() {
                Some("BINDING_REVOKED" | "TOKEN_NOT_FOUND") => return Ok(None),
                Some("LIMIT_EXCEEDED") => OrderUpdate {
                    decline_reason: Some("LIMIT_EXCEEDED".into()),
                    ..OrderUpdate::to(OrderStatus::Declined)
                },
                _ => return Err(self.payment_failed(order, e).await),
            },
        };
        let settled = self
            .order_updates
            .submit(OrderTransition {
                order_id: order.id.clone(),
                from: vec![OrderStatus::PendingPayment],
                update,
                now_ms: now_ms(),
            })
            .await?;
        match settled {
            Some(o) => {
                tracing::info!(order_id = %o.id, status = ?o.status, "order settled with the card on file");
                Ok(Some(o))
            }
            // Settled meanwhile by another attempt with the same key.
            None => Ok(Some(self.order(&order.id).await?)),
        }
    }

    async fn send_bind_and_pay(&self, order: &Order, user: &User) -> ShopResult<Order> {
        let result = self
            .payments
            .open_session(BindingRequest {
                user_id: user.id.clone(),
                presentation: order.presentation,
                return_url: order.return_url.clone(),
                prefill: prefill(user),
                purchase: Some(Purchase {
                    order_id: order.id.clone(),
                    amount: order.amount,
                    description: order.description.clone(),
                }),
                idempotency_key: order_key(&order.id),
            })
            .await;
        let session = match result {
            Ok(session) => session,
            Err(e) => return Err(self.payment_failed(order, e).await),
        };
        self.store
            .insert_session(&session.id, &user.id, Some(&order.id), now_ms())
            .await?;
        let update = OrderUpdate {
            page: Some(ShopperPage {
                session_id: session.id.clone(),
                page_url: session.page_url.clone(),
            }),
            ..OrderUpdate::to(OrderStatus::AwaitingShopper)
        };
        match self
            .transition(&order.id, &[OrderStatus::PendingPayment], update)
            .await?
        {
            Some(o) => {
                tracing::info!(order_id = %o.id, session_id = %session.id, "order awaits the shopper (BindAndPay)");
                Ok(o)
            }
            None => self.order(&order.id).await,
        }
    }

    /// payment-svc refused the order's call (the order is cancelled) or its
    /// outcome is unknown (the order stays pending for the settler).
    async fn payment_failed(&self, order: &Order, err: PaymentError) -> ShopError {
        let err = ShopError::from_payment(err, Some(&order.id));
        if !matches!(err, ShopError::PaymentUnavailable { .. }) {
            let update = OrderUpdate {
                decline_reason: Some("REFUSED_BY_PAYMENT_SERVICE".into()),
                ..OrderUpdate::to(OrderStatus::Cancelled)
            };
            if let Err(e) = self
                .transition(&order.id, &[OrderStatus::PendingPayment], update)
                .await
            {
                return e;
            }
        }
        err
    }

    /// One pass of the settler: orders left PENDING_PAYMENT while payment-svc
    /// was unreachable are sent again, with the same keys.
    pub async fn settle_pending(&self, older_than_ms: i64) -> ShopResult<usize> {
        let stale = self
            .store
            .stale_pending_orders(now_ms() - older_than_ms, 50)
            .await?;
        let mut settled = 0;
        for order in stale {
            let id = order.id.clone();
            match self.settle(order).await {
                Ok(o) => {
                    settled += 1;
                    tracing::info!(order_id = %id, status = ?o.status, "pending order settled");
                }
                Err(ShopError::PaymentUnavailable { .. }) => {
                    // Still down: touch it so the next pass waits a little.
                    self.transition(
                        &id,
                        &[OrderStatus::PendingPayment],
                        OrderUpdate::to(OrderStatus::PendingPayment),
                    )
                    .await?;
                    break;
                }
                Err(e) => tracing::warn!(order_id = %id, error = %e, "could not settle order"),
            }
        }
        Ok(settled)
    }
}

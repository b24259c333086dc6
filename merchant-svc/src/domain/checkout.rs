//! Checkout: the shop looks the user up in its own database and either pays
//! with the stored token (no authentication) or sends the second binding
//! request, BindAndPay. Every call to payment-svc for an order carries the
//! order's own idempotency key, so sending it again — a retry, the settler
//! after an outage — can never charge twice.
use paybind_proto::payment::v1 as pb;
use paybind_shared::{grpc::reason_of, money::Money};
use sha2::{Digest, Sha256};

use super::{
    identifier, invalid, now_ms, presentation, status, users::prefill, Shop, ShopError, ShopResult,
};
use crate::store::{OrderRow, OrderTransition, OrderUpdate, UserRow};

#[derive(Debug, Clone)]
pub struct CheckoutInput {
    pub user_id: String,
    pub amount: Option<pb::Money>,
    pub description: String,
    pub presentation: i32,
    pub return_url: String,
    pub idempotency_key: String,
}

/// The key payment-svc sees for everything done for one order.
fn order_key(order_id: &str) -> String {
    format!("order:{order_id}")
}

fn order_amount(order: &OrderRow) -> pb::Money {
    pb::Money {
        amount_minor: order.amount_minor,
        currency: order.currency.clone(),
    }
}

impl Shop {
    pub async fn checkout(&self, input: CheckoutInput) -> ShopResult<OrderRow> {
        let user = self
            .user_row(&identifier(&input.user_id, "user_id")?)
            .await?;
        let amount = input
            .amount
            .as_ref()
            .ok_or_else(|| invalid("amount", "amount is required"))?;
        let money = Money::parse(amount.amount_minor, &amount.currency).map_err(|e| {
            ShopError::Invalid {
                field: "amount",
                reason: if matches!(e, paybind_shared::money::MoneyError::UnknownCurrency(_)) {
                    "UNKNOWN_CURRENCY"
                } else {
                    "INVALID_AMOUNT"
                },
                message: e.to_string(),
            }
        })?;
        if money.currency() != self.currency {
            return Err(ShopError::Invalid {
                field: "amount.currency",
                reason: "CURRENCY_NOT_ACCEPTED",
                message: format!("this shop sells in {}", self.currency),
            });
        }
        let description = input.description.trim().to_owned();
        if description.chars().count() > 200 || description.chars().any(char::is_control) {
            return Err(invalid(
                "description",
                "description must be at most 200 characters",
            ));
        }
        let key = input.idempotency_key.clone();
        if key.is_empty() || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "idempotency_key",
                "idempotency_key must be 1 to 128 printable ASCII characters",
            ));
        }
        let presentation = presentation(input.presentation);
        let return_url = self.return_url(&input.return_url);
        let request_hash = hex::encode(Sha256::digest(
            format!(
                "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
                user.id,
                money.amount_minor(),
                money.currency(),
                description,
                presentation.as_str_name(),
                return_url
            )
            .as_bytes(),
        ));
        let now = now_ms();
        let order = OrderRow {
            id: paybind_shared::ids::new_id("ord"),
            user_id: user.id.clone(),
            amount_minor: money.amount_minor(),
            currency: money.currency().code().to_owned(),
            description,
            status: status::PENDING_PAYMENT.into(),
            decline_reason: None,
            payment_id: None,
            refunded_minor: 0,
            session_id: None,
            page_url: None,
            paid_with_card_on_file: false,
            presentation: presentation.as_str_name().to_owned(),
            return_url,
            idempotency_key: key,
            request_hash: request_hash.clone(),
            created_ms: now,
            updated_ms: now,
        };
        let (order, new) = self.order_inserts.submit(order).await?;
        if !new {
            if order.request_hash != request_hash {
                return Err(ShopError::IdempotencyKeyReused);
            }
            if order.status != status::PENDING_PAYMENT {
                return Ok(order);
            }
        }
        tracing::info!(order_id = %order.id, user_id = %user.id, new, "checkout");
        self.settle(order).await
    }

    /// Takes a PENDING_PAYMENT order as far as it can go now.
    pub async fn settle(&self, order: OrderRow) -> ShopResult<OrderRow> {
        let user = self.user_row(&order.user_id).await?;
        if let (Some(binding_id), Some(token)) =
            (user.binding_id.clone(), user.binding_token.clone())
        {
            match self.pay_with_card_on_file(&order, &user, token).await {
                Ok(Some(paid)) => return Ok(paid),
                Ok(None) => {
                    // The binding is gone at payment-svc: forget it and ask
                    // the shopper to bind again, paying this order.
                    self.store.clear_binding_if(&user.id, &binding_id).await?;
                }
                Err(e) => return Err(e),
            }
        }
        self.send_bind_and_pay(&order, &user).await
    }

    /// `Ok(None)` when the binding no longer works (revoked, unknown).
    async fn pay_with_card_on_file(
        &self,
        order: &OrderRow,
        user: &UserRow,
        token: String,
    ) -> ShopResult<Option<OrderRow>> {
        let result = self
            .payments
            .pay(pb::PayRequest {
                binding_token: token,
                merchant_user_id: user.id.clone(),
                merchant_order_id: order.id.clone(),
                amount: Some(order_amount(order)),
                description: order.description.clone(),
                idempotency_key: order_key(&order.id),
            })
            .await;
        let update = match result {
            Ok(payment) if payment.status == pb::PaymentStatus::Pending as i32 => {
                // Not settled yet at payment-svc: keep the order for the settler.
                return Err(ShopError::PaymentUnavailable {
                    order_id: Some(order.id.clone()),
                });
            }
            Ok(payment) => {
                let paid = payment.status == pb::PaymentStatus::Succeeded as i32;
                OrderUpdate {
                    status: if paid { status::PAID } else { status::DECLINED }.into(),
                    decline_reason: (!paid).then(|| payment.decline_reason.clone()),
                    payment_id: Some(payment.payment_id),
                    paid_with_card_on_file: true,
                    ..Default::default()
                }
            }
            Err(s) => match reason_of(&s).as_deref() {
                Some("BINDING_REVOKED" | "TOKEN_NOT_FOUND") => return Ok(None),
                Some("LIMIT_EXCEEDED") => OrderUpdate {
                    status: status::DECLINED.into(),
                    decline_reason: Some("LIMIT_EXCEEDED".into()),
                    ..Default::default()
                },
                _ => return Err(self.payment_failed(order, s).await),
            },
        };
        let settled = self
            .order_updates
            .submit(OrderTransition {
                order_id: order.id.clone(),
                from: vec![status::PENDING_PAYMENT],
                update,
                now_ms: now_ms(),
            })
            .await?;
        match settled {
            Some(o) => {
                tracing::info!(order_id = %o.id, status = %o.status, "order settled with the card on file");
                Ok(Some(o))
            }
            // Settled meanwhile by another attempt with the same key.
            None => Ok(Some(self.order(&order.id).await?)),
        }
    }

    async fn send_bind_and_pay(&self, order: &OrderRow, user: &UserRow) -> ShopResult<OrderRow> {
        let result = self
            .payments
            .bind_and_pay(pb::BindAndPayRequest {
                merchant_user_id: user.id.clone(),
                presentation: pb::Presentation::from_str_name(&order.presentation)
                    .unwrap_or(pb::Presentation::Redirect) as i32,
                return_url: order.return_url.clone(),
                prefill: Some(prefill(user)),
                payment: Some(pb::PaymentDetails {
                    merchant_order_id: order.id.clone(),
                    amount: Some(order_amount(order)),
                    description: order.description.clone(),
                }),
                idempotency_key: order_key(&order.id),
            })
            .await;
        let session = match result {
            Ok(r) => r
                .session
                .ok_or_else(|| anyhow::anyhow!("payment-svc returned no session"))?,
            Err(s) => return Err(self.payment_failed(order, s).await),
        };
        self.store
            .insert_session(&session.session_id, &user.id, Some(&order.id), now_ms())
            .await?;
        let update = OrderUpdate {
            status: status::AWAITING_SHOPPER.into(),
            session_id: Some(session.session_id.clone()),
            page_url: Some(session.binding_page_url.clone()),
            ..Default::default()
        };
        let updated = self
            .store
            .update_order(&order.id, &[status::PENDING_PAYMENT], &update, now_ms())
            .await?;
        match updated {
            Some(o) => {
                tracing::info!(order_id = %o.id, session_id = %session.session_id, "order awaits the shopper (BindAndPay)");
                Ok(o)
            }
            None => self.order(&order.id).await,
        }
    }

    /// payment-svc refused the order's call (the order is cancelled) or its
    /// outcome is unknown (the order stays pending for the settler).
    async fn payment_failed(&self, order: &OrderRow, status: tonic::Status) -> ShopError {
        let err = ShopError::from_payment(status, Some(&order.id));
        if !matches!(err, ShopError::PaymentUnavailable { .. }) {
            if let Err(e) = self.cancel(order, "REFUSED_BY_PAYMENT_SERVICE").await {
                return e;
            }
        }
        err
    }

    async fn cancel(&self, order: &OrderRow, reason: &str) -> ShopResult<()> {
        let update = OrderUpdate {
            status: status::CANCELLED.into(),
            decline_reason: Some(reason.into()),
            ..Default::default()
        };
        self.store
            .update_order(&order.id, &[status::PENDING_PAYMENT], &update, now_ms())
            .await?;
        Ok(())
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
                    tracing::info!(order_id = %id, status = %o.status, "pending order settled");
                }
                Err(ShopError::PaymentUnavailable { .. }) => {
                    // Still down: touch it so the next pass waits a little.
                    let touch = self.order(&id).await?;
                    let update = OrderUpdate {
                        status: status::PENDING_PAYMENT.into(),
                        ..Default::default()
                    };
                    self.store
                        .update_order(&touch.id, &[status::PENDING_PAYMENT], &update, now_ms())
                        .await?;
                    break;
                }
                Err(e) => tracing::warn!(order_id = %id, error = %e, "could not settle order"),
            }
        }
        Ok(settled)
    }

    /// Learns a bind session's outcome from payment-svc and applies it.
    pub async fn complete_session(
        &self,
        session_id: &str,
    ) -> ShopResult<(UserRow, Option<OrderRow>, i32)> {
        let user_id = self
            .store
            .session_user(session_id)
            .await?
            .ok_or(ShopError::SessionNotFound)?;
        let session = self
            .payments
            .get_bind_session(session_id)
            .await
            .map_err(|s| ShopError::from_payment(s, None))?;
        self.apply_session(&user_id, session).await
    }

    pub(super) async fn apply_session(
        &self,
        user_id: &str,
        session: pb::BindSession,
    ) -> ShopResult<(UserRow, Option<OrderRow>, i32)> {
        let order = self.store.order_by_session(&session.session_id).await?;
        let status_value = session.status;
        let order = match pb::BindSessionStatus::try_from(session.status) {
            Ok(pb::BindSessionStatus::Completed) => {
                if let Some(binding) = &session.binding {
                    self.store_binding(user_id, binding).await?;
                }
                match (order, &session.payment) {
                    (Some(order), Some(payment)) => {
                        let update = OrderUpdate {
                            status: status::PAID.into(),
                            payment_id: Some(payment.payment_id.clone()),
                            ..Default::default()
                        };
                        let from = [status::AWAITING_SHOPPER, status::PENDING_PAYMENT];
                        match self
                            .store
                            .update_order(&order.id, &from, &update, now_ms())
                            .await?
                        {
                            Some(o) => Some(o),
                            None => Some(self.order(&order.id).await?),
                        }
                    }
                    (order, _) => order,
                }
            }
            Ok(pb::BindSessionStatus::Failed | pb::BindSessionStatus::Expired) => match order {
                Some(order) => {
                    let update = OrderUpdate {
                        status: status::CANCELLED.into(),
                        decline_reason: Some(
                            if status_value == pb::BindSessionStatus::Expired as i32 {
                                "SESSION_EXPIRED"
                            } else {
                                "SESSION_FAILED"
                            }
                            .into(),
                        ),
                        ..Default::default()
                    };
                    self.store
                        .update_order(&order.id, &[status::AWAITING_SHOPPER], &update, now_ms())
                        .await?;
                    Some(self.order(&order.id).await?)
                }
                None => None,
            },
            _ => order,
        };
        Ok((self.user_row(user_id).await?, order, status_value))
    }

    /// Direct entry: the shopper's information, forwarded.
    pub async fn submit_shopper_info(
        &self,
        request: pb::SubmitBindInfoRequest,
    ) -> ShopResult<pb::BindSession> {
        self.store
            .session_user(&request.session_id)
            .await?
            .ok_or(ShopError::SessionNotFound)?;
        self.payments
            .submit_bind_info(request)
            .await
            .map_err(|s| ShopError::from_payment(s, None))
    }

    /// Direct entry: the shopper's code, forwarded; then the session is
    /// completed as `complete_session` does.
    pub async fn verify_shopper_code(
        &self,
        session_id: &str,
        code: &str,
    ) -> ShopResult<(UserRow, Option<OrderRow>, i32)> {
        let user_id = self
            .store
            .session_user(session_id)
            .await?
            .ok_or(ShopError::SessionNotFound)?;
        let session = self
            .payments
            .verify_bind(pb::VerifyBindRequest {
                session_id: session_id.to_owned(),
                code: code.to_owned(),
            })
            .await
            .map_err(|s| ShopError::from_payment(s, None))?;
        self.apply_session(&user_id, session).await
    }
}

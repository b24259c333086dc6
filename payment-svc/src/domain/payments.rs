//! Paying with a binding token (no further authentication, within the
//! auth-free limits) and refunding.
//!
//! Pay is the hot path: the token is checked in memory, then one store step
//! checks the binding and limits, claims the idempotency key and records the
//! payment as PENDING; the acquirer is asked; one more statement records the
//! outcome. A retry with the same key finds the first payment and never
//! charges again.
use std::time::Duration;
use tracing::Instrument as _;

use paybind_shared::{
    clock::now_ms,
    fields::request_hash,
    ids::{BindingToken, IdempotencyKey, MerchantUserId, OrderId, PaymentId, RefundId},
    model::RefundStatus,
    money::Money,
};

use super::{
    acquirer::{AcquirerError, CardRef, DeclineReason},
    card::CardNumber,
    error::{DomainError, DomainResult, Invalid},
    events::RevokedBy,
    merchants::Merchant,
    model::{ChargeableCard, Payment, PaymentState, Refund},
    vault::Purpose,
    Services,
};
use crate::store::{
    PaymentOutcome, RefundReserveOutcome, ReserveOutcome, ReservePayment, ReserveRefund,
};

/// How long a duplicate waits for the first request's outcome, while that
/// request's process is alive and charging.
const DUPLICATE_WAIT: Duration = Duration::from_secs(3);

/// A Pay request, parsed. (`Debug` masks the token.)
#[derive(Debug, Clone)]
pub struct PayInput {
    pub token: BindingToken,
    pub merchant_user_id: MerchantUserId,
    pub order_id: OrderId,
    pub amount: Money,
    pub description: String,
    pub idempotency_key: IdempotencyKey,
}

/// A Refund request, parsed.
#[derive(Debug, Clone)]
pub struct RefundInput {
    pub payment_id: PaymentId,
    pub amount: Money,
    pub reason: String,
    pub idempotency_key: IdempotencyKey,
}

impl Services {
    pub async fn pay(&self, merchant: &Merchant, input: PayInput) -> DomainResult<Payment> {
        if input.amount.currency() != merchant.currency {
            return Err(Invalid::new(
                "CURRENCY_NOT_ACCEPTED",
                format!("this merchant charges in {}", merchant.currency),
            )
            .at("amount.currency")
            .into());
        }
        let binding_id =
            self.binding_id_from_token(merchant, &input.token, &input.merchant_user_id)?;
        let amount_text = input.amount.amount_minor().to_string();
        // The binding is left out: a retry of the same order after the user
        // re-bound finds the first payment instead of failing the key.
        let request_hash = request_hash(&[
            input.merchant_user_id.as_str(),
            input.order_id.as_str(),
            &amount_text,
            input.amount.currency().code(),
            &input.description,
        ]);
        let now = now_ms();
        let payment_id = PaymentId::generate();
        let request = ReservePayment {
            payment_id: payment_id.clone(),
            merchant_id: merchant.id.clone(),
            binding_id: binding_id.clone(),
            merchant_user_id: input.merchant_user_id,
            order_id: input.order_id,
            amount: input.amount,
            description: input.description,
            idempotency_key: input.idempotency_key,
            request_hash: request_hash.clone(),
            day: self.today(now),
            now_ms: now,
        };
        let reserved = self
            .reservations
            .submit(request)
            .instrument(tracing::info_span!("store.reserve_payment"))
            .await?;
        match reserved {
            ReserveOutcome::Reserved(card) => {
                let _charging = self.in_flight.hold(&payment_id);
                let today = self.local_date(now);
                if card.expiry.expired_in(today.year, today.month) {
                    // Expired since the last expiry pass: the network is not
                    // asked; the reservation is settled as declined and the
                    // binding expires now (its event goes to the merchant).
                    self.record_outcome(
                        &payment_id,
                        PaymentState::Declined {
                            reason: DeclineReason::ExpiredCard,
                        },
                    )
                    .await?;
                    self.expire_bindings(now).await?;
                    return Err(DomainError::CardExpired);
                }
                self.charge(&payment_id, &card, input.amount).await
            }
            ReserveOutcome::Existing(existing) => {
                if existing.request_hash.as_deref() != Some(request_hash.as_str()) {
                    return Err(DomainError::IdempotencyKeyReused);
                }
                self.settled(merchant, existing).await
            }
            ReserveOutcome::NotFound => Err(DomainError::TokenNotFound),
            ReserveOutcome::Failed(why) => {
                Err(anyhow::anyhow!("reserving the payment: {why}").into())
            }
            ReserveOutcome::Revoked => {
                // Which refusal: an expired card is one the shopper can fix.
                let binding = self.store.get_binding(&merchant.id, &binding_id).await?;
                match binding.and_then(|b| b.revocation().map(|r| r.by)) {
                    Some(RevokedBy::Expiry) => Err(DomainError::CardExpired),
                    _ => Err(DomainError::BindingRevoked),
                }
            }
            ReserveOutcome::CurrencyMismatch => Err(Invalid::new(
                "CURRENCY_NOT_ACCEPTED",
                "the binding's limits are in another currency",
            )
            .at("amount.currency")
            .into()),
            ReserveOutcome::LimitExceeded {
                per_payment_limit,
                remaining_today,
            } => Err(DomainError::LimitExceeded {
                per_payment_limit,
                remaining_today: remaining_today.max(0),
            }),
        }
    }

    /// Asks the acquirer and records the outcome of a reserved payment.
    async fn charge(
        &self,
        payment_id: &PaymentId,
        card: &ChargeableCard,
        amount: Money,
    ) -> DomainResult<Payment> {
        let number = self.open_card(card)?;
        let card = CardRef {
            number: &number,
            expiry: card.expiry,
            cvv: None,
        };
        let state = match self.acquirer.charge(payment_id, &card, amount).await {
            Ok(acquirer_ref) => PaymentState::Succeeded { acquirer_ref },
            Err(AcquirerError::Declined(reason)) => PaymentState::Declined { reason },
            Err(AcquirerError::Unavailable(why)) => {
                // Left PENDING: a retry with the same key finishes it.
                tracing::warn!(%payment_id, %why, "acquirer unavailable; payment left pending");
                return Err(DomainError::AcquirerUnavailable);
            }
        };
        self.record_outcome(payment_id, state).await
    }

    /// Records a charge's outcome (and frees its in-flight row).
    pub(super) async fn record_outcome(
        &self,
        payment_id: &PaymentId,
        state: PaymentState,
    ) -> DomainResult<Payment> {
        let status = state.status();
        let outcome = PaymentOutcome {
            payment_id: payment_id.clone(),
            state,
            now_ms: now_ms(),
        };
        let recorded = self
            .outcomes
            .submit(outcome)
            .instrument(tracing::info_span!("store.record_payment_outcome"))
            .await;
        match recorded {
            Ok(Some(payment)) => {
                self.events_written();
                self.metrics
                    .payment_settled(&payment.state, super::metrics::PaymentFlow::Pay);
                tracing::info!(%payment_id, ?status, "payment settled");
                Ok(payment)
            }
            // Settled meanwhile by a retry that finished it: read that.
            Ok(None) => self
                .store
                .payment_by_id(payment_id)
                .await?
                .ok_or(DomainError::PaymentNotFound),
            // The acquirer answered but the outcome is not recorded: the
            // payment stays PENDING and a retry with the same key finishes it
            // (the acquirer is idempotent by payment id).
            Err(e) => {
                tracing::error!(%payment_id, error = %e, "could not record a payment outcome");
                Err(match DomainError::from(e) {
                    DomainError::DatabaseUnavailable => DomainError::DatabaseUnavailable,
                    _ => DomainError::RequestInProgress,
                })
            }
        }
    }

    /// The card number of a vaulted card, for the acquirer.
    pub(super) fn open_card(&self, card: &ChargeableCard) -> DomainResult<CardNumber> {
        let bytes = self
            .vault
            .open_for(Purpose::CardNumber, &card.owner, &card.pan)?;
        let digits = std::str::from_utf8(&bytes)
            .map_err(|_| anyhow::anyhow!("vaulted card is not valid"))?;
        Ok(CardNumber::parse(digits).map_err(|_| anyhow::anyhow!("vaulted card is not valid"))?)
    }

    /// A payment found by its idempotency key: returned once it is settled.
    /// A duplicate arriving while the first request is being charged waits
    /// for it; one whose first request was abandoned — its process gone (a
    /// crash, a restart), or this process no longer charging it — finishes
    /// it at once.
    async fn settled(&self, merchant: &Merchant, mut payment: Payment) -> DomainResult<Payment> {
        let started = tokio::time::Instant::now();
        while payment.state == PaymentState::Pending {
            if self.take_over(&payment.id).await? {
                let _charging = self.in_flight.hold(&payment.id);
                return self.finish_abandoned(merchant, payment).await;
            }
            if started.elapsed() > DUPLICATE_WAIT {
                return Err(DomainError::RequestInProgress);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            payment = self
                .store
                .get_payment(&merchant.id, &payment.id)
                .await?
                .ok_or(DomainError::PaymentNotFound)?;
        }
        Ok(payment)
    }

    /// Takes over a charge in flight whose process is gone, or that this
    /// process owns but no longer charges: `true` if this process now owns
    /// it. A charge another live process is making is left to it.
    pub(super) async fn take_over(&self, payment_id: &PaymentId) -> DomainResult<bool> {
        if self.in_flight.contains(payment_id) {
            return Ok(false);
        }
        // No row: its outcome is being recorded right now.
        let Some(charge) = self.store.pending_charge(payment_id).await? else {
            return Ok(false);
        };
        let abandoned = charge.owner == Some(self.store.instance())
            || !self.store.owner_alive(charge.owner).await?;
        Ok(abandoned && self.store.claim_charge(payment_id, charge.owner).await?)
    }

    async fn finish_abandoned(
        &self,
        merchant: &Merchant,
        payment: Payment,
    ) -> DomainResult<Payment> {
        let binding_id = payment
            .binding_id
            .clone()
            .ok_or_else(|| anyhow::anyhow!("pending payment without binding"))?;
        let binding = self
            .store
            .get_binding(&merchant.id, &binding_id)
            .await?
            .ok_or(DomainError::TokenNotFound)?;
        // Revoked since the payment was started: nothing new is charged.
        // What the card network did before stands (charged: the payment
        // succeeded; otherwise it is voided and declined).
        let Some(card) = binding.chargeable() else {
            tracing::info!(payment_id = %payment.id, "binding revoked: settling, not charging");
            self.settle_abandoned(&payment.id).await?;
            return self
                .store
                .get_payment(&merchant.id, &payment.id)
                .await?
                .ok_or(DomainError::PaymentNotFound);
        };
        self.charge(&payment.id, &card, payment.amount).await
    }

    pub async fn get_payment(
        &self,
        merchant: &Merchant,
        payment_id: &PaymentId,
    ) -> DomainResult<Payment> {
        self.store
            .get_payment(&merchant.id, payment_id)
            .await?
            .ok_or(DomainError::PaymentNotFound)
    }

    /// Refunds all or part of a succeeded payment; never more than is left.
    pub async fn refund(
        &self,
        merchant: &Merchant,
        input: RefundInput,
    ) -> DomainResult<(Refund, Payment)> {
        let amount_text = input.amount.amount_minor().to_string();
        let request_hash = request_hash(&[
            input.payment_id.as_str(),
            &amount_text,
            input.amount.currency().code(),
            &input.reason,
        ]);
        let now = now_ms();
        let request = ReserveRefund {
            refund_id: RefundId::generate(),
            merchant_id: merchant.id.clone(),
            payment_id: input.payment_id.clone(),
            amount: input.amount,
            reason: input.reason,
            idempotency_key: input.idempotency_key,
            request_hash: request_hash.clone(),
            now_ms: now,
        };
        let (refund, payment) = match self.store.reserve_refund(&request).await? {
            RefundReserveOutcome::Reserved { refund, payment } => (refund, payment),
            RefundReserveOutcome::Existing(existing) => {
                if existing.request_hash != request_hash {
                    return Err(DomainError::IdempotencyKeyReused);
                }
                let payment = self.get_payment(merchant, &existing.payment_id).await?;
                if existing.status != RefundStatus::Pending {
                    return Ok((existing, payment));
                }
                (existing, payment)
            }
            RefundReserveOutcome::PaymentNotFound => return Err(DomainError::PaymentNotFound),
            RefundReserveOutcome::NotRefundable => return Err(DomainError::PaymentNotRefundable),
            RefundReserveOutcome::CurrencyMismatch => {
                return Err(Invalid::new(
                    "CURRENCY_NOT_ACCEPTED",
                    "a refund is in the payment's currency",
                )
                .at("amount.currency")
                .into())
            }
            RefundReserveOutcome::Exceeds { refundable } => {
                return Err(DomainError::RefundExceedsPayment { refundable })
            }
        };
        let PaymentState::Succeeded { acquirer_ref } = &payment.state else {
            return Err(
                anyhow::anyhow!("refund {} of a payment that did not succeed", refund.id).into(),
            );
        };
        let succeeded = match self
            .acquirer
            .refund(&refund.id, acquirer_ref, refund.amount)
            .await
        {
            Ok(()) => true,
            Err(AcquirerError::Declined(reason)) => {
                tracing::warn!(refund_id = %refund.id, %reason, "refund refused by the acquirer");
                false
            }
            Err(AcquirerError::Unavailable(why)) => {
                tracing::warn!(refund_id = %refund.id, %why, "acquirer unavailable; refund left pending");
                return Err(DomainError::AcquirerUnavailable);
            }
        };
        let (refund, payment) = self
            .store
            .finalize_refund(&refund.id, succeeded, now_ms())
            .await?;
        self.events_written();
        tracing::info!(refund_id = %refund.id, payment_id = %payment.id, status = ?refund.status, "refund settled");
        Ok((refund, payment))
    }
}

//! Paying with a binding token (no further authentication, within the
//! auth-free limits) and refunding.
//!
//! Pay is the hot path: the token is checked in memory, then one store step
//! checks the binding and limits, claims the idempotency key and records the
//! payment as PENDING; the acquirer is asked; one more statement records the
//! outcome. A retry with the same key finds the first payment and never
//! charges again.
use std::time::Duration;

use paybind_shared::{ids::new_id, money::Money};

use super::{
    acquirer::{AcquirerError, CardRef},
    card::{CardNumber, Expiry},
    clock::now_ms,
    error::{DomainError, DomainResult, Invalid},
    fields,
    merchants::Merchant,
    vault::{Purpose, Sealed},
    Services,
};
use crate::store::{
    PaymentOutcome, PaymentRow, RefundReserveOutcome, RefundRow, ReserveOutcome, ReservePayment,
    ReserveRefund, VaultedCard,
};

/// How long a duplicate waits for the first request's outcome.
const DUPLICATE_WAIT: Duration = Duration::from_secs(3);
/// A PENDING payment older than this was abandoned (crash, outage) and a
/// retry finishes it.
const ABANDONED_AFTER_MS: i64 = 10_000;

/// A Pay request, parsed.
#[derive(Debug, Clone)]
pub struct PayInput {
    pub token: String,
    pub merchant_user_id: String,
    pub order_id: String,
    pub amount: Money,
    pub description: String,
    pub idempotency_key: String,
}

/// A Refund request, parsed.
#[derive(Debug, Clone)]
pub struct RefundInput {
    pub payment_id: String,
    pub amount: Money,
    pub reason: String,
    pub idempotency_key: String,
}

impl Services {
    pub async fn pay(&self, merchant: &Merchant, input: PayInput) -> DomainResult<PaymentRow> {
        if input.amount.currency() != merchant.currency {
            return Err(Invalid::new(
                "CURRENCY_NOT_ACCEPTED",
                format!("this merchant charges in {}", merchant.currency),
            )
            .at("amount.currency"));
        }
        let binding_id =
            self.binding_id_from_token(merchant, &input.token, &input.merchant_user_id)?;
        let amount_text = input.amount.amount_minor().to_string();
        // The binding is left out: a retry of the same order after the user
        // re-bound finds the first payment instead of failing the key.
        let request_hash = fields::request_hash(&[
            &input.merchant_user_id,
            &input.order_id,
            &amount_text,
            input.amount.currency().code(),
            &input.description,
        ]);
        let now = now_ms();
        let request = ReservePayment {
            payment_id: new_id("pay"),
            merchant_id: merchant.id.clone(),
            binding_id,
            merchant_user_id: input.merchant_user_id,
            order_id: input.order_id,
            amount_minor: input.amount.amount_minor(),
            currency: input.amount.currency().code().to_owned(),
            description: input.description,
            idempotency_key: input.idempotency_key,
            request_hash: request_hash.clone(),
            day: self.today(now),
            now_ms: now,
        };
        match self.reservations.submit(request.clone()).await? {
            ReserveOutcome::Reserved(card) => {
                self.charge(&request.payment_id, &card, input.amount).await
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
            ReserveOutcome::Revoked => Err(DomainError::BindingRevoked),
            ReserveOutcome::CurrencyMismatch => Err(Invalid::new(
                "CURRENCY_NOT_ACCEPTED",
                "the binding's limits are in another currency",
            )
            .at("amount.currency")),
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
        payment_id: &str,
        card: &VaultedCard,
        amount: Money,
    ) -> DomainResult<PaymentRow> {
        let digits = self.vault.open_string(
            Purpose::CardNumber,
            &Sealed {
                key_id: card.pan_key_id.clone(),
                blob: card.pan_ct.clone(),
            },
        )?;
        let number =
            CardNumber::parse(&digits).map_err(|_| anyhow::anyhow!("vaulted card is not valid"))?;
        let card = CardRef {
            number: &number,
            expiry: Expiry {
                month: card.exp_month as u8,
                year: card.exp_year as u16,
            },
            cvv: None,
        };
        let (status, decline_reason, acquirer_ref) =
            match self.acquirer.charge(payment_id, &card, amount).await {
                Ok(reference) => ("SUCCEEDED", None, Some(reference)),
                Err(AcquirerError::Declined(reason)) => {
                    ("DECLINED", Some(reason.as_str().to_owned()), None)
                }
                Err(AcquirerError::Unavailable(why)) => {
                    // Left PENDING: a retry with the same key finishes it.
                    tracing::warn!(payment_id, %why, "acquirer unavailable; payment left pending");
                    return Err(DomainError::AcquirerUnavailable);
                }
            };
        let outcome = PaymentOutcome {
            payment_id: payment_id.to_owned(),
            status: status.to_owned(),
            decline_reason,
            acquirer_ref,
            now_ms: now_ms(),
        };
        match self.outcomes.submit(outcome).await {
            Ok(Some(payment)) => {
                tracing::info!(payment_id, status, "payment settled");
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
                tracing::error!(payment_id, error = %e, "could not record a payment outcome");
                Err(DomainError::RequestInProgress)
            }
        }
    }

    /// A payment found by its idempotency key: returned once it is settled.
    /// A duplicate arriving while the first request is in flight waits for
    /// it; one whose first request was abandoned finishes it.
    async fn settled(
        &self,
        merchant: &Merchant,
        mut payment: PaymentRow,
    ) -> DomainResult<PaymentRow> {
        let started = tokio::time::Instant::now();
        while payment.status == "PENDING" {
            if now_ms() - payment.created_ms > ABANDONED_AFTER_MS {
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

    async fn finish_abandoned(
        &self,
        merchant: &Merchant,
        payment: PaymentRow,
    ) -> DomainResult<PaymentRow> {
        let binding_id = payment
            .binding_id
            .clone()
            .ok_or_else(|| anyhow::anyhow!("pending payment without binding"))?;
        let binding = self
            .store
            .get_binding(&merchant.id, &binding_id)
            .await?
            .ok_or(DomainError::TokenNotFound)?;
        let amount = Money::parse(payment.amount_minor, &payment.currency)
            .map_err(|e| anyhow::anyhow!("stored amount: {e}"))?;
        let card = VaultedCard {
            pan_ct: binding.pan_ct,
            pan_key_id: binding.pan_key_id,
            exp_month: binding.exp_month,
            exp_year: binding.exp_year,
        };
        self.charge(&payment.id, &card, amount).await
    }

    pub async fn get_payment(
        &self,
        merchant: &Merchant,
        payment_id: &str,
    ) -> DomainResult<PaymentRow> {
        if payment_id.is_empty() || payment_id.len() > 64 {
            return Err(DomainError::PaymentNotFound);
        }
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
    ) -> DomainResult<(RefundRow, PaymentRow)> {
        let amount_text = input.amount.amount_minor().to_string();
        let request_hash = fields::request_hash(&[
            &input.payment_id,
            &amount_text,
            input.amount.currency().code(),
            &input.reason,
        ]);
        let now = now_ms();
        let request = ReserveRefund {
            refund_id: new_id("rfd"),
            merchant_id: merchant.id.clone(),
            payment_id: input.payment_id.clone(),
            amount_minor: input.amount.amount_minor(),
            currency: input.amount.currency().code().to_owned(),
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
                if existing.status != "PENDING" {
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
                .at("amount.currency"))
            }
            RefundReserveOutcome::Exceeds { refundable } => {
                return Err(DomainError::RefundExceedsPayment { refundable })
            }
        };
        let acquirer_ref = payment
            .acquirer_ref
            .clone()
            .ok_or_else(|| anyhow::anyhow!("succeeded payment without acquirer reference"))?;
        let amount = Money::parse(refund.amount_minor, &refund.currency)
            .map_err(|e| anyhow::anyhow!("stored refund amount: {e}"))?;
        let succeeded = match self
            .acquirer
            .refund(&refund.id, &acquirer_ref, amount)
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
        tracing::info!(refund_id = %refund.id, payment_id = %payment.id, status = %refund.status, "refund settled");
        Ok((refund, payment))
    }
}

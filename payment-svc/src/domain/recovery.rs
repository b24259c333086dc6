//! Recovery of abandoned charges. A payment is recorded PENDING before the
//! card network is asked; if the process charging it dies (`kill -9`, a
//! crash, a lost machine), nothing would finish it. This worker finds the
//! charges in flight whose process is gone — on PostgreSQL its advisory
//! lock is free, on SQLite it is any process but this one — and those this
//! process gave up on long ago, takes each over (one process wins the
//! claim), asks the card network to settle it for good (`Acquirer::resolve`:
//! what it charged, or a void) and records that: approved or declined as
//! charged; never charged as declined (`PROCESSING_ERROR`), its amount
//! given back to the day's limit. A BindAndPay charge completes or fails
//! its session as the charge would have.
use std::time::Duration;

use paybind_shared::{clock::now_ms, ids::PaymentId};

use super::{
    acquirer::{DeclineReason, Resolution},
    error::{DomainError, DomainResult},
    model::{Payment, PaymentState, SessionState},
    Services,
};
use crate::store::PendingCharge;

/// A charge this young is left alone: its process may simply be slow.
const GRACE_MS: i64 = 1_000;
/// A charge this process owns but no longer makes (its request ended, e.g.
/// the card network did not answer) is left this long for a client retry
/// to finish it by charging, before it is settled here.
const OWN_IDLE_MS: i64 = 30_000;
/// Charges looked at per pass.
const BATCH: i64 = 100;

impl Services {
    /// Runs passes every `interval` until the task is dropped; the first at
    /// once, so a restarted process settles what its predecessor left.
    pub async fn recover_forever(&self, interval: Duration) {
        loop {
            match self.recover_charges().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(settled = n, "abandoned charges settled"),
                Err(e) => tracing::warn!(error = %e, "recovery pass failed"),
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// One pass; returns how many charges it settled.
    pub async fn recover_charges(&self) -> DomainResult<usize> {
        let now = now_ms();
        let mut settled = 0;
        for charge in self.store.pending_charges(now - GRACE_MS, BATCH).await? {
            if !self.abandoned(&charge, now).await? {
                continue;
            }
            if !self
                .store
                .claim_charge(&charge.payment_id, charge.owner)
                .await?
            {
                continue; // another process took it first
            }
            let _charging = self.in_flight.hold(&charge.payment_id);
            match self.settle_abandoned(&charge.payment_id).await {
                Ok(()) => settled += 1,
                Err(e) => {
                    tracing::warn!(payment_id = %charge.payment_id, error = %e, "could not settle an abandoned charge yet")
                }
            }
        }
        Ok(settled)
    }

    async fn abandoned(&self, charge: &PendingCharge, now: i64) -> DomainResult<bool> {
        if self.in_flight.contains(&charge.payment_id) {
            return Ok(false);
        }
        if charge.owner == Some(self.store.instance()) {
            return Ok(now - charge.created_ms >= OWN_IDLE_MS);
        }
        Ok(!self.store.owner_alive(charge.owner).await?)
    }

    /// Settles one charge this process now owns.
    pub(super) async fn settle_abandoned(&self, payment_id: &PaymentId) -> DomainResult<()> {
        let Some(payment) = self.store.payment_by_id(payment_id).await? else {
            self.store.forget_charge(payment_id).await?;
            return Ok(());
        };
        if payment.state != PaymentState::Pending {
            self.store.forget_charge(payment_id).await?;
            return Ok(());
        }
        let charged = match self.acquirer.resolve(payment_id).await {
            Ok(Resolution::Charged { acquirer_ref }) => Ok(acquirer_ref),
            Ok(Resolution::Declined(reason)) => Err(reason),
            Ok(Resolution::NeverCharged) => Err(DeclineReason::ProcessingError),
            Err(e) => return Err(anyhow::anyhow!("the card network did not settle it: {e}").into()),
        };
        tracing::info!(%payment_id, approved = charged.is_ok(), "settling an abandoned charge");
        match &payment.session_id {
            Some(_) => self.settle_abandoned_session(&payment, charged).await,
            None => {
                let state = match charged {
                    Ok(acquirer_ref) => PaymentState::Succeeded { acquirer_ref },
                    Err(reason) => PaymentState::Declined { reason },
                };
                self.record_outcome(payment_id, state).await.map(|_| ())
            }
        }
    }

    /// A BindAndPay charge: its session completes (binding and payment) or
    /// uses an attempt, as `VerifyBind` would have made it.
    async fn settle_abandoned_session(
        &self,
        payment: &Payment,
        charged: Result<String, DeclineReason>,
    ) -> DomainResult<()> {
        let merchant = self
            .store
            .list_merchants()
            .await?
            .into_iter()
            .find(|m| m.id == payment.merchant_id)
            .ok_or_else(|| anyhow::anyhow!("payment {} of an unknown merchant", payment.id))?;
        let session_id = payment
            .session_id
            .clone()
            .ok_or_else(|| anyhow::anyhow!("payment {} has no session", payment.id))?;
        let session = self.load_session(&merchant, &session_id).await?;
        let charging_this = matches!(
            &session.state,
            SessionState::Charging { payment_id, .. } if *payment_id == payment.id
        );
        if !charging_this {
            // The session moved on without it: settle the payment alone.
            let state = match charged {
                Ok(acquirer_ref) => PaymentState::Succeeded { acquirer_ref },
                Err(reason) => PaymentState::Declined { reason },
            };
            return self.record_outcome(&payment.id, state).await.map(|_| ());
        }
        match self.settle_charge(&merchant, session, charged).await {
            // A decline is settled by using an attempt, reported as an error.
            Ok(_) | Err(DomainError::CardDeclined { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

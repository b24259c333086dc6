//! Bindings as merchants see them, unbinding, and listing.
use paybind_shared::{
    clock::now_ms,
    fields::PageCursor,
    ids::{BindingId, BindingToken, MerchantUserId},
};

use super::{
    error::{DomainError, DomainResult},
    events::RevokedBy,
    merchants::Merchant,
    model::Binding,
    Services,
};
use crate::store::BindingQuery;

/// A binding with its token and what is left of today's limit.
#[derive(Debug, Clone)]
pub struct BindingView {
    pub binding: Binding,
    pub token: BindingToken,
    pub remaining_today: i64,
}

/// One page of bindings.
pub struct BindingPage {
    pub bindings: Vec<BindingView>,
    pub next_page: Option<PageCursor>,
}

/// A ListBindings request, parsed.
#[derive(Debug, Clone)]
pub struct BindingListing {
    pub merchant_user_id: MerchantUserId,
    pub page_size: i64,
    pub after: Option<PageCursor>,
    pub include_revoked: bool,
}

impl Services {
    pub fn binding_view(&self, binding: Binding) -> DomainResult<BindingView> {
        let token = self
            .tokens
            .token_for(&binding.merchant_id, &binding.merchant_user_id, &binding.id)
            .ok_or_else(|| anyhow::anyhow!("malformed binding id {}", binding.id))?;
        Ok(BindingView {
            remaining_today: binding.remaining_on(self.today(now_ms())),
            token,
            binding,
        })
    }

    /// The binding a token names for this merchant and user.
    pub fn binding_id_from_token(
        &self,
        merchant: &Merchant,
        token: &BindingToken,
        merchant_user_id: &MerchantUserId,
    ) -> DomainResult<BindingId> {
        self.tokens
            .binding_id_of(token, &merchant.id, merchant_user_id)
            .ok_or(DomainError::TokenNotFound)
    }

    /// Ends a binding. Unbinding a revoked binding returns it unchanged.
    /// `reason` is parsed free text; empty means the merchant gave none.
    pub async fn unbind(
        &self,
        merchant: &Merchant,
        token: &BindingToken,
        merchant_user_id: &MerchantUserId,
        reason: &str,
    ) -> DomainResult<BindingView> {
        let binding_id = self.binding_id_from_token(merchant, token, merchant_user_id)?;
        let reason = if reason.is_empty() {
            "unbound by the merchant"
        } else {
            reason
        };
        let binding = self
            .store
            .revoke_binding(
                &merchant.id,
                &binding_id,
                RevokedBy::Merchant,
                reason,
                now_ms(),
            )
            .await?
            .ok_or(DomainError::TokenNotFound)?;
        self.events_written();
        tracing::info!(binding_id = %binding.id, merchant_id = %merchant.id, "binding revoked");
        self.binding_view(binding)
    }

    pub async fn list_bindings(
        &self,
        merchant: &Merchant,
        listing: BindingListing,
    ) -> DomainResult<BindingPage> {
        let limit = listing.page_size;
        let mut bindings = self
            .store
            .list_bindings(&BindingQuery {
                merchant_id: merchant.id.clone(),
                merchant_user_id: listing.merchant_user_id,
                include_revoked: listing.include_revoked,
                after: listing.after,
                limit: limit + 1,
            })
            .await?;
        let more = bindings.len() as i64 > limit;
        bindings.truncate(limit as usize);
        let next_page = match (more, bindings.last()) {
            (true, Some(last)) => Some(PageCursor {
                created_ms: last.created_ms,
                id: last.id.as_str().to_owned(),
            }),
            _ => None,
        };
        Ok(BindingPage {
            bindings: bindings
                .into_iter()
                .map(|b| self.binding_view(b))
                .collect::<DomainResult<_>>()?,
            next_page,
        })
    }
}

/// How often bindings whose card's month is over are expired.
pub const EXPIRY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
/// Bindings expired per transaction.
const EXPIRY_BATCH: i64 = 500;

impl Services {
    /// Expires every active binding whose card's expiry month is over at
    /// `now_ms` (in the limits' time zone): it pays no more, its card data
    /// goes, and its merchant is told (`BINDING_REVOKED`, by EXPIRY). The
    /// number expired.
    pub async fn expire_bindings(&self, now_ms: i64) -> DomainResult<usize> {
        let today = self.local_date(now_ms);
        let month = i64::from(today.year) * 12 + i64::from(today.month);
        let mut expired = 0;
        loop {
            let batch = self
                .store
                .expire_bindings(month, EXPIRY_BATCH, now_ms)
                .await?;
            expired += batch.len();
            for b in &batch {
                tracing::info!(binding_id = %b.id, merchant_id = %b.merchant_id, "binding expired with its card");
            }
            if !batch.is_empty() {
                self.events_written();
            }
            if (batch.len() as i64) < EXPIRY_BATCH {
                return Ok(expired);
            }
        }
    }

    /// Tells merchants of the bind sessions that expired unfinished by
    /// `now_ms` (`BIND_SESSION_EXPIRED`), once each; how many.
    pub async fn tell_expired_sessions(&self, now_ms: i64) -> DomainResult<u64> {
        let mut told = 0;
        loop {
            let batch = self.store.expire_sessions(now_ms, EXPIRY_BATCH).await?;
            told += batch;
            if batch > 0 {
                self.events_written();
            }
            if (batch as i64) < EXPIRY_BATCH {
                return Ok(told);
            }
        }
    }

    /// The expiry pass, at start and every [`EXPIRY_INTERVAL`]: bindings
    /// whose card expired, sessions that expired unfinished.
    pub async fn expire_forever(self: std::sync::Arc<Self>) {
        let mut tick = tokio::time::interval(EXPIRY_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.expire_bindings(now_ms()).await {
                tracing::warn!(error = %e, "expiring bindings failed");
            }
            if let Err(e) = self.tell_expired_sessions(now_ms()).await {
                tracing::warn!(error = %e, "telling expired sessions failed");
            }
        }
    }
}

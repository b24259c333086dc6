//! Velocity limits against card testing, SMS pumping and code guessing:
//! how often a card may be checked, a code sent or a code tried, counted
//! per merchant, per card, per phone and per session over sliding windows.
//! The counts live in the database and are checked and recorded in one
//! transaction, so N replicas share them.
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    error::{DomainError, DomainResult},
    Services,
};

/// What is counted, and against what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Counter {
    /// Cards sent to their issuer for a merchant.
    CardChecksPerMerchant,
    /// Checks of one card (its keyed fingerprint), at any merchant.
    CardChecksPerCard,
    /// One-time codes sent for a merchant.
    CodesPerMerchant,
    /// Codes sent to one phone (its keyed hash).
    CodesPerPhone,
    /// Codes tried in one session, across resends and re-submissions.
    CodeTriesPerSession,
    /// Codes tried for one phone, across sessions and merchants.
    CodeTriesPerPhone,
}

impl Counter {
    /// Who a refusal is about, as the merchant is told (`scope`).
    pub fn scope(self) -> &'static str {
        match self {
            Counter::CardChecksPerMerchant | Counter::CodesPerMerchant => "merchant",
            Counter::CardChecksPerCard => "card",
            Counter::CodesPerPhone | Counter::CodeTriesPerPhone => "phone",
            Counter::CodeTriesPerSession => "session",
        }
    }
}

/// One limit to respect: at most `limit` events of `counter` for `key`
/// within any `window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowance {
    pub counter: Counter,
    /// A merchant or session id, or a keyed hash: never a card number or
    /// a phone number as such.
    pub key: String,
    pub limit: u32,
    pub window: Duration,
}

impl Allowance {
    pub fn window_ms(&self) -> i64 {
        i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX)
    }
}

/// The allowance that was used up, and when its oldest event leaves the
/// window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedUp {
    pub counter: Counter,
    pub retry_after: Duration,
}

/// The limits, all configurable (`[velocity]` in payment-svc's config).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
// Each field may be set alone (`PAYMENT__VELOCITY__…`); the rest keep
// their defaults.
#[serde(default, deny_unknown_fields)]
pub struct VelocityLimits {
    /// Cards sent to their issuer per merchant per minute.
    pub card_checks_per_merchant_per_minute: u32,
    /// Checks of one card per day (all merchants): stops CVV and expiry
    /// guessing across sessions.
    pub card_checks_per_card_per_day: u32,
    /// Codes sent per merchant per minute.
    pub codes_per_merchant_per_minute: u32,
    /// Codes sent to one phone per hour (all merchants).
    pub codes_per_phone_per_hour: u32,
    /// Codes tried per session in all (resends do not reset it).
    pub code_tries_per_session: u32,
    /// Codes tried per phone per day (all sessions and merchants).
    pub code_tries_per_phone_per_day: u32,
}

impl Default for VelocityLimits {
    fn default() -> Self {
        Self {
            card_checks_per_merchant_per_minute: 600,
            card_checks_per_card_per_day: 10,
            codes_per_merchant_per_minute: 600,
            codes_per_phone_per_hour: 5,
            code_tries_per_session: 10,
            code_tries_per_phone_per_day: 20,
        }
    }
}

impl VelocityLimits {
    /// For a development stack, where one person plays every shopper with
    /// the same few test cards and phones, again and again: the same
    /// limits, with room for a day of trying the pages (the defaults would
    /// stop the demo after five codes an hour to one phone).
    pub fn development() -> Self {
        Self {
            card_checks_per_card_per_day: 500,
            codes_per_phone_per_hour: 100,
            code_tries_per_phone_per_day: 500,
            ..Self::default()
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        for (name, value) in [
            (
                "card_checks_per_merchant_per_minute",
                self.card_checks_per_merchant_per_minute,
            ),
            (
                "card_checks_per_card_per_day",
                self.card_checks_per_card_per_day,
            ),
            (
                "codes_per_merchant_per_minute",
                self.codes_per_merchant_per_minute,
            ),
            ("codes_per_phone_per_hour", self.codes_per_phone_per_hour),
            ("code_tries_per_session", self.code_tries_per_session),
            (
                "code_tries_per_phone_per_day",
                self.code_tries_per_phone_per_day,
            ),
        ] {
            if value == 0 {
                anyhow::bail!("velocity.{name} must be at least 1");
            }
        }
        Ok(())
    }

    fn allowance(&self, counter: Counter, key: &str) -> Allowance {
        const MINUTE: Duration = Duration::from_secs(60);
        const HOUR: Duration = Duration::from_secs(3600);
        const DAY: Duration = Duration::from_secs(86_400);
        let (limit, window) = match counter {
            Counter::CardChecksPerMerchant => (self.card_checks_per_merchant_per_minute, MINUTE),
            Counter::CardChecksPerCard => (self.card_checks_per_card_per_day, DAY),
            Counter::CodesPerMerchant => (self.codes_per_merchant_per_minute, MINUTE),
            Counter::CodesPerPhone => (self.codes_per_phone_per_hour, HOUR),
            // A session lives a day at most.
            Counter::CodeTriesPerSession => (self.code_tries_per_session, DAY),
            Counter::CodeTriesPerPhone => (self.code_tries_per_phone_per_day, DAY),
        };
        Allowance {
            counter,
            key: key.to_owned(),
            limit,
            window,
        }
    }
}

impl Services {
    /// Counts one event against each `(counter, key)` if every limit allows
    /// it; otherwise counts nothing and refuses with `RateLimited`.
    pub(crate) async fn take_allowances(&self, events: &[(Counter, &str)]) -> DomainResult<()> {
        let allowances: Vec<Allowance> = events
            .iter()
            .map(|(counter, key)| self.policy.velocity.allowance(*counter, key))
            .collect();
        match self
            .store
            .take_allowances(&allowances, paybind_shared::clock::now_ms())
            .await?
        {
            Ok(()) => Ok(()),
            Err(used_up) => {
                tracing::warn!(counter = ?used_up.counter, "velocity limit reached");
                Err(DomainError::RateLimited {
                    scope: used_up.counter.scope(),
                    retry_after: used_up.retry_after,
                })
            }
        }
    }

    /// The key a phone is counted under: a keyed hash, so the table holds
    /// no phone number.
    pub(crate) fn phone_key(&self, e164: &str) -> String {
        self.fingerprints
            .mac_hex(&[b"paybind/velocity/phone/v1", e164.as_bytes()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_zero_is_not() {
        VelocityLimits::default().validate().expect("defaults");
        let zero = VelocityLimits {
            codes_per_phone_per_hour: 0,
            ..Default::default()
        };
        assert!(zero.validate().is_err());
    }

    #[test]
    fn each_counter_has_its_window() {
        let limits = VelocityLimits::default();
        let a = limits.allowance(Counter::CodesPerPhone, "k");
        assert_eq!((a.limit, a.window), (5, Duration::from_secs(3600)));
        let a = limits.allowance(Counter::CardChecksPerCard, "k");
        assert_eq!((a.limit, a.window_ms()), (10, 86_400_000));
    }
}

//! Retention: shopper data is kept only as long as it serves the flow it
//! was given for (PCI DSS 3.2.1: no card data beyond its need; PIPL: personal
//! information no longer than necessary). A revoked binding is wiped at
//! once (`Store::revoke_binding`); this job wipes the rest as it ages: the
//! submission of a session that expired unfinished (card number, ID number,
//! name, phone, code) and its prefill, the issuer's answers kept for the
//! institution (`card_checks`), and velocity events past every window.
use std::time::Duration;

use paybind_shared::clock::now_ms;
use serde::{Deserialize, Serialize};

use super::Services;

/// How long what is kept (`[retention]` in payment-svc's config).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
// Each field may be set alone (`PAYMENT__VELOCITY__…`); the rest keep
// their defaults.
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// How long after a session's expiry its shopper data may stay.
    pub session_data_secs: u64,
    /// How long the issuers' answers at binding (`card_checks`) are kept.
    pub card_checks_days: u32,
    /// How often the purge runs.
    pub interval_ms: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            session_data_secs: 3600,
            card_checks_days: 180,
            interval_ms: 60_000,
        }
    }
}

impl RetentionSettings {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.session_data_secs > 30 * 86_400 {
            anyhow::bail!("retention.session_data_secs must be at most 30 days");
        }
        if !(1..=3660).contains(&self.card_checks_days) {
            anyhow::bail!("retention.card_checks_days must be between 1 and 3660");
        }
        if !(50..=3_600_000).contains(&self.interval_ms) {
            anyhow::bail!("retention.interval_ms must be between 50 and 3600000");
        }
        Ok(())
    }
}

/// Where one purge draws its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeCutoffs {
    /// Sessions that expired before this keep no shopper data.
    pub sessions_expired_before_ms: i64,
    /// Card checks before this are deleted.
    pub card_checks_before_ms: i64,
    /// Velocity events before this are past every window.
    pub velocity_before_ms: i64,
    /// Feed events that occurred before this are deleted (README: kept for
    /// at least 30 days, beyond every delivery retry).
    pub events_before_ms: i64,
    /// Shopper sign-ins that ended before this are deleted.
    pub shopper_logins_before_ms: i64,
}

/// How long the event feed keeps an event.
pub const EVENT_RETENTION_DAYS: i64 = 30;

/// What one purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub sessions: u64,
    pub card_checks: u64,
    pub velocity_events: u64,
    pub events: u64,
    pub shopper_logins: u64,
}

impl PurgeCutoffs {
    pub fn at(now_ms: i64, settings: &RetentionSettings) -> Self {
        const DAY_MS: i64 = 86_400_000;
        let session_ms = i64::try_from(settings.session_data_secs)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000);
        Self {
            sessions_expired_before_ms: now_ms.saturating_sub(session_ms),
            card_checks_before_ms: now_ms
                .saturating_sub(i64::from(settings.card_checks_days).saturating_mul(DAY_MS)),
            // The longest velocity window is a day.
            velocity_before_ms: now_ms.saturating_sub(DAY_MS),
            events_before_ms: now_ms.saturating_sub(EVENT_RETENTION_DAYS * DAY_MS),
            shopper_logins_before_ms: now_ms.saturating_sub(DAY_MS),
        }
    }
}

impl Services {
    /// Purges every `interval` for as long as the service runs.
    pub async fn purge_forever(&self, settings: RetentionSettings) {
        let mut tick = tokio::time::interval(Duration::from_millis(settings.interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let cutoffs = PurgeCutoffs::at(now_ms(), &settings);
            match self.store.purge(&cutoffs).await {
                Ok(purged) if purged != Purged::default() => {
                    tracing::info!(
                        sessions = purged.sessions,
                        card_checks = purged.card_checks,
                        velocity_events = purged.velocity_events,
                        events = purged.events,
                        shopper_logins = purged.shopper_logins,
                        "retention: purged"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention: could not purge yet"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_follow_the_settings() {
        let settings = RetentionSettings {
            session_data_secs: 60,
            card_checks_days: 2,
            interval_ms: 1000,
        };
        let now = 10 * 86_400_000;
        let c = PurgeCutoffs::at(now, &settings);
        assert_eq!(c.sessions_expired_before_ms, now - 60_000);
        assert_eq!(c.card_checks_before_ms, now - 2 * 86_400_000);
        assert_eq!(c.velocity_before_ms, now - 86_400_000);
        assert_eq!(c.events_before_ms, now - 30 * 86_400_000);
        RetentionSettings::default().validate().expect("defaults");
        assert!(RetentionSettings {
            card_checks_days: 0,
            ..settings
        }
        .validate()
        .is_err());
    }
}

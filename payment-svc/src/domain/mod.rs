//! The payment institution's rules: bind sessions and their state machine,
//! the card vault, bindings and their tokens, payments, refunds and limits.
//! Nothing here knows about gRPC or HTML; handlers and pages both call in,
//! with values already parsed into the types of `model`.
use std::sync::Arc;

pub mod acquirer;
pub mod bindings;
pub mod card;
pub mod error;
pub mod in_flight;
pub mod merchants;
pub mod model;
pub mod otp;
pub mod payments;
pub mod recovery;
pub mod retention;
pub mod sessions;
pub mod shopper;
pub mod sms;
pub mod token;
pub mod vault;
pub mod velocity;

use acquirer::Acquirer;
use error::DomainResult;
use merchants::MerchantDirectory;
use paybind_shared::{
    batch::Batcher,
    clock::{self, now_ms, LocalDate},
    ids::MerchantId,
};
use sms::SmsSender;
use token::TokenCodec;
use vault::{KeyedHasher, Purpose, Sealed, Vault};

use crate::{
    domain::model::Payment,
    store::{PaymentOutcome, ReserveOutcome, ReservePayment, Store, StoreError},
};

/// Pay's reservations, written in batches.
pub type Reservations = Batcher<ReservePayment, ReserveOutcome, Arc<StoreError>>;
/// Pay's outcomes, written in batches; `None` for a payment settled already.
pub type Outcomes = Batcher<PaymentOutcome, Option<Payment>, Arc<StoreError>>;

/// Tunables of the domain, from configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The time zone of "today" for daily limits, in minutes east of UTC.
    pub utc_offset_minutes: i32,
    /// How long a bind session stays open.
    pub session_ttl_ms: i64,
    /// Card submissions (declines, failed payments) allowed per session.
    pub max_card_attempts: u32,
    /// Base URL of the binding pages, e.g. `http://localhost:8081`.
    pub public_base_url: String,
    /// Velocity limits on card checks, codes sent and codes tried.
    pub velocity: velocity::VelocityLimits,
    /// The least wait between two codes of one session.
    pub resend_interval_ms: i64,
}

/// Everything the domain operations need, shared by all requests.
pub struct Services {
    pub store: Arc<dyn Store>,
    pub merchants: Arc<MerchantDirectory>,
    pub vault: Vault,
    pub fingerprints: KeyedHasher,
    pub otp_hasher: KeyedHasher,
    pub tokens: TokenCodec,
    pub acquirer: Arc<dyn Acquirer>,
    /// Pay's two writes, each in batches (group commit): the reservation
    /// and the outcome.
    pub reservations: Reservations,
    pub outcomes: Outcomes,
    pub sms: Arc<dyn SmsSender>,
    pub policy: Policy,
    /// The charges this process is making now.
    pub in_flight: in_flight::InFlight,
}

/// The one-time pass that keys stored card fingerprints per merchant.
const FINGERPRINTS_PER_MERCHANT: &str = "card_fingerprint_v2_per_merchant";

impl Services {
    /// A card's fingerprint at one merchant: finds the same card again for
    /// that merchant's user, and is a different value at every merchant, so
    /// a database reader cannot link a card across merchants.
    pub fn card_fingerprint(&self, merchant_id: &MerchantId, digits: &[u8]) -> String {
        self.fingerprints
            .mac_hex(&[b"paybind/card/v2", merchant_id.as_str().as_bytes(), digits])
    }

    /// Gives the fingerprints stored before they were keyed per merchant
    /// their per-merchant value; once, whichever replica starts first.
    pub async fn refingerprint_cards(&self) -> DomainResult<()> {
        let fingerprint = |merchant_id: &MerchantId, pan: &Sealed| {
            let digits = self.vault.open(Purpose::CardNumber, pan)?;
            Ok(self.card_fingerprint(merchant_id, &digits))
        };
        if let Some(changed) = self
            .store
            .refingerprint_cards(FINGERPRINTS_PER_MERCHANT, &fingerprint, now_ms())
            .await?
        {
            tracing::info!(changed, "card fingerprints keyed per merchant");
        }
        Ok(())
    }

    /// The batch writers of the hot path, over `store`.
    pub fn pay_writers(store: Arc<dyn Store>) -> (Reservations, Outcomes) {
        let in_flight = store.backend().batches_in_flight();
        let reserve_store = store.clone();
        let reservations = Batcher::spawn(in_flight, move |requests: Vec<ReservePayment>| {
            let store = reserve_store.clone();
            async move { store.reserve_payments(&requests).await.map_err(Arc::new) }
        });
        let outcomes = Batcher::spawn(in_flight, move |outcomes: Vec<PaymentOutcome>| {
            let store = store.clone();
            async move {
                let settled = store.finalize_payments(&outcomes).await.map_err(Arc::new)?;
                Ok(outcomes
                    .iter()
                    .map(|o| settled.iter().find(|p| p.id == o.payment_id).cloned())
                    .collect())
            }
        });
        (reservations, outcomes)
    }

    /// Today's day number in the limits' time zone.
    fn today(&self, now_ms: i64) -> i64 {
        clock::day_number(now_ms, self.policy.utc_offset_minutes)
    }

    fn local_date(&self, now_ms: i64) -> LocalDate {
        clock::local_date(now_ms, self.policy.utc_offset_minutes)
    }
}

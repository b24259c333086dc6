//! The payment institution's rules: bind sessions and their state machine,
//! the card vault, bindings and their tokens, payments, refunds and limits.
//! Nothing here knows about gRPC or HTML; handlers and pages both call in,
//! with values already parsed into the types of `model`.
use std::sync::Arc;

pub mod acquirer;
pub mod bindings;
pub mod card;
pub mod deliveries;
pub mod error;
pub mod events;
pub mod in_flight;
pub mod merchants;
pub mod metrics;
pub mod model;
pub mod my_bindings;
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
    ids::{MerchantId, SessionId},
};
use sms::SmsSender;
use token::TokenCodec;
use vault::{KeyedHasher, Purpose, Sealed, Vault};

use crate::{
    domain::model::{binding_owner, session_owner, Payment},
    store::{
        PaymentOutcome, Rekeyed, ReserveOutcome, ReservePayment, SealedRow, Store, StoreError,
    },
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
    /// Payments and sessions, counted as their outcomes are written.
    pub metrics: metrics::PaymentMetrics,
    /// Wakes the event sequencer after a write, and the feed's followers.
    pub event_wake: events::EventWake,
}

/// The one-time pass that keys stored card fingerprints per merchant and
/// binds sealed numbers to their rows.
const SEALED_CARDS_PASS: &str = "cards_keyed_per_merchant_and_sealed_to_their_rows";

impl Services {
    /// A card's fingerprint at one merchant: finds the same card again for
    /// that merchant's user, and is a different value at every merchant, so
    /// a database reader cannot link a card across merchants.
    pub fn card_fingerprint(&self, merchant_id: &MerchantId, digits: &[u8]) -> String {
        self.fingerprints
            .mac_hex(&[b"paybind/card/v2", merchant_id.as_str().as_bytes(), digits])
    }

    /// Brings what earlier versions stored to today's form, once, whichever
    /// replica starts first: card fingerprints keyed per merchant, and
    /// sealed card and ID numbers bound to their row (the binding's merchant,
    /// user and card; the session). A value sealed the old way (its purpose
    /// only) is opened that way here, and nowhere else.
    pub async fn rekey_sealed_cards(&self) -> DomainResult<()> {
        let rekey = |row: SealedRow<'_>| -> anyhow::Result<Rekeyed> {
            let owner = |fingerprint: &str| {
                if row.is_binding {
                    binding_owner(row.merchant_id, row.merchant_user_id, fingerprint)
                } else {
                    session_owner(&SessionId::from_stored(row.id.to_owned()))
                }
            };
            let was = owner(row.card_fingerprint);
            let open = |purpose: Purpose, sealed: &Sealed| {
                self.vault
                    .open_for(purpose, &was, sealed)
                    .or_else(|_| self.vault.open(purpose, sealed))
            };
            let digits = open(Purpose::CardNumber, &row.pan)?;
            let card_fingerprint = self.card_fingerprint(row.merchant_id, &digits);
            let now = owner(&card_fingerprint);
            let id_number = match &row.id_number {
                Some(sealed) => Some(self.vault.seal_for(
                    Purpose::IdNumber,
                    &now,
                    &open(Purpose::IdNumber, sealed)?,
                )?),
                None => None,
            };
            Ok(Rekeyed {
                pan: self.vault.seal_for(Purpose::CardNumber, &now, &digits)?,
                card_fingerprint,
                id_number,
            })
        };
        // Where no number is left to compute it again from (a revoked
        // binding, an issuer's answer), the old fingerprint is keyed per
        // merchant instead: it links nothing across merchants any more.
        let unlink = |merchant_id: &MerchantId, old: &str| {
            self.fingerprints.mac_hex(&[
                b"paybind/card/unlinked/v2",
                merchant_id.as_str().as_bytes(),
                old.as_bytes(),
            ])
        };
        if let Some(changed) = self
            .store
            .rekey_sealed_cards(SEALED_CARDS_PASS, &rekey, &unlink, now_ms())
            .await?
        {
            tracing::info!(
                changed,
                "sealed cards keyed per merchant and bound to their rows"
            );
        }
        Ok(())
    }

    /// The batch writers of the hot path, over `store`; each batch's size
    /// goes to `batches`.
    pub fn pay_writers(
        store: Arc<dyn Store>,
        batches: paybind_shared::metrics::BatchMetrics,
    ) -> (Reservations, Outcomes) {
        // One reservation batch at a time as well: a batch's fixed cost
        // (PL/pgSQL's setup, its key locks) is most of it, and with several
        // in flight the batches held one or two requests each; with one,
        // three on average, and a third less of the database's time.
        let reserve_store = store.clone();
        let reserve_batches = batches.clone();
        let reservations = Batcher::spawn(1, move |requests: Vec<ReservePayment>| {
            let store = reserve_store.clone();
            reserve_batches.observe("payment_reservations", requests.len());
            async move { store.reserve_payments(&requests).await.map_err(Arc::new) }
        });
        // One outcome batch at a time: each writes its payments' events,
        // and event writers commit one after another anyway (the store gives
        // cursors in commit order); what arrives meanwhile joins the next.
        let outcomes = Batcher::spawn(1, move |outcomes: Vec<PaymentOutcome>| {
            let store = store.clone();
            batches.observe("payment_outcomes", outcomes.len());
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

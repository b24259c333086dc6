//! A binding: one shopper (a merchant's user), one merchant, one card.
use paybind_shared::{
    ids::{BindingId, MerchantId, MerchantUserId, SessionId},
    model::{BindingStatus, CardBrand},
    money::{Currency, Money},
    person::{FullName, Phone},
};

use crate::domain::{card::Expiry, events::RevokedBy, vault::Sealed};

/// A card in the vault: what is needed to charge it and to show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultedCard {
    /// Keyed hash of the number: finds the same card again without storing it.
    pub fingerprint: String,
    /// The sealed number.
    pub pan: Sealed,
    pub brand: CardBrand,
    pub last4: String,
    pub expiry: Expiry,
}

/// The cardholder, as the shopper entered them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub name: FullName,
    /// The sealed PRC resident ID number.
    pub id_number: Sealed,
    pub phone: Phone,
}

/// What may be paid with the binding without authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_payment: Money,
    pub daily: Money,
}

impl Limits {
    pub fn currency(&self) -> Currency {
        self.daily.currency()
    }
}

/// Who ended a binding, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub at_ms: i64,
    pub by: RevokedBy,
    pub reason: String,
}

/// What a binding shows of its card, for as long as the binding exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardOnFile {
    /// Keyed hash of the number: finds the same card again without storing it.
    pub fingerprint: String,
    pub brand: CardBrand,
    pub last4: String,
    pub expiry: Expiry,
}

/// Whether a binding may pay, and what it keeps for that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingState {
    /// May pay: the sealed card number and the holder are kept.
    Active { pan: Sealed, holder: Holder },
    /// Can no longer pay. The card number and the holder's data were wiped
    /// when it was revoked: nothing is kept that is no longer needed.
    Revoked(Revocation),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub id: BindingId,
    pub merchant_id: MerchantId,
    pub merchant_user_id: MerchantUserId,
    pub card: CardOnFile,
    pub state: BindingState,
    pub limits: Limits,
    /// The day (in the limits' time zone) `used_today` counts, and how much
    /// of the daily limit was used on it, in minor units.
    pub usage_day: i64,
    pub used_on_usage_day: i64,
    pub created_ms: i64,
}

impl Binding {
    pub fn status(&self) -> BindingStatus {
        match self.state {
            BindingState::Active { .. } => BindingStatus::Active,
            BindingState::Revoked(_) => BindingStatus::Revoked,
        }
    }

    pub fn revocation(&self) -> Option<&Revocation> {
        match &self.state {
            BindingState::Active { .. } => None,
            BindingState::Revoked(revocation) => Some(revocation),
        }
    }

    /// The card to charge; none once revoked.
    pub fn chargeable(&self) -> Option<ChargeableCard> {
        match &self.state {
            BindingState::Active { pan, .. } => Some(ChargeableCard {
                pan: pan.clone(),
                expiry: self.card.expiry,
                owner: binding_owner(
                    &self.merchant_id,
                    &self.merchant_user_id,
                    &self.card.fingerprint,
                ),
            }),
            BindingState::Revoked(_) => None,
        }
    }

    /// What is left of the daily limit on `today`.
    pub fn remaining_on(&self, today: i64) -> i64 {
        let used = if self.usage_day == today {
            self.used_on_usage_day
        } else {
            0
        };
        (self.limits.daily.amount_minor() - used).max(0)
    }
}

/// The card to charge, as the binding (or session) holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeableCard {
    pub pan: Sealed,
    pub expiry: Expiry,
    /// Whose number it is: bound into the ciphertext's associated data.
    pub owner: String,
}

/// The owner a session's sealed card and ID numbers are bound to: they open
/// only as this session's.
pub fn session_owner(session_id: &SessionId) -> String {
    format!("session/{session_id}")
}

/// The owner a binding's sealed card and ID numbers are bound to: the
/// merchant, its user and the card (what a binding is, and what stays the
/// same when the same card is bound again). A ciphertext moved to another
/// binding does not open there.
pub fn binding_owner(
    merchant_id: &MerchantId,
    merchant_user_id: &MerchantUserId,
    card_fingerprint: &str,
) -> String {
    format!("binding/{merchant_id}/{merchant_user_id}/{card_fingerprint}")
}

impl VaultedCard {
    pub fn on_file(&self) -> CardOnFile {
        CardOnFile {
            fingerprint: self.fingerprint.clone(),
            brand: self.brand,
            last4: self.last4.clone(),
            expiry: self.expiry,
        }
    }

    /// The card to charge, sealed for `owner` (the session holding it).
    pub fn chargeable(&self, owner: String) -> ChargeableCard {
        ChargeableCard {
            pan: self.pan.clone(),
            expiry: self.expiry,
            owner,
        }
    }
}

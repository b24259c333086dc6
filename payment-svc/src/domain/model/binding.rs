//! A binding: one shopper (a merchant's user), one merchant, one card.
use paybind_shared::{
    ids::{BindingId, MerchantId, MerchantUserId},
    model::{BindingStatus, CardBrand},
    money::{Currency, Money},
    person::{FullName, Phone},
};

use crate::domain::{card::Expiry, vault::Sealed};

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
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub id: BindingId,
    pub merchant_id: MerchantId,
    pub merchant_user_id: MerchantUserId,
    pub card: VaultedCard,
    pub holder: Holder,
    pub limits: Limits,
    /// The day (in the limits' time zone) `used_today` counts, and how much
    /// of the daily limit was used on it, in minor units.
    pub usage_day: i64,
    pub used_on_usage_day: i64,
    pub created_ms: i64,
    /// Set once the binding is revoked; it can then no longer pay.
    pub revoked: Option<Revocation>,
}

impl Binding {
    pub fn status(&self) -> BindingStatus {
        match self.revoked {
            None => BindingStatus::Active,
            Some(_) => BindingStatus::Revoked,
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

/// The card to charge, as the binding holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeableCard {
    pub pan: Sealed,
    pub expiry: Expiry,
}

impl VaultedCard {
    pub fn chargeable(&self) -> ChargeableCard {
        ChargeableCard {
            pan: self.pan.clone(),
            expiry: self.expiry,
        }
    }
}

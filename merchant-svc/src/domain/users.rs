//! Users, their card on file, binding, and removing the card.
use std::{collections::HashMap, sync::Mutex};

use paybind_shared::{
    clock::now_ms,
    db::StoreError,
    ids::{BindingId, IdempotencyKey, MerchantUserId},
    model::{BindingStatus, Presentation},
    person::Phone,
};

use super::{
    model::{CardOnFile, User},
    payment::{BindingInfo, BindingRequest, LimitsToday, Prefill, SessionInfo},
    Shop, ShopError, ShopResult,
};

/// A CreateUser request, parsed.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: MerchantUserId,
    pub display_name: String,
    pub phone: Option<Phone>,
}

impl NewUser {
    /// The user as first stored: no card, pages shown by redirect.
    pub(super) fn into_user(self) -> User {
        User {
            id: self.id,
            display_name: self.display_name,
            phone: self.phone,
            created_ms: now_ms(),
            card: None,
            presentation: Presentation::Redirect,
        }
    }
}

/// A user with what payment-svc says of their binding's limits today.
pub struct UserView {
    pub user: User,
    pub limits: Option<KnownLimits>,
}

/// A binding's limits as payment-svc gave them, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownLimits {
    pub limits: LimitsToday,
    pub as_of_ms: i64,
}

/// The last limits read per card, shown when payment-svc is slow to answer.
#[derive(Default)]
pub struct LimitsCache(Mutex<HashMap<BindingId, KnownLimits>>);

impl LimitsCache {
    /// How many cards' figures are kept at most: a bound, not a policy.
    const MAX_ENTRIES: usize = 10_000;

    fn remember(&self, binding: &BindingId, limits: LimitsToday) -> KnownLimits {
        let known = KnownLimits {
            limits,
            as_of_ms: now_ms(),
        };
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= Self::MAX_ENTRIES {
            map.clear();
        }
        map.insert(binding.clone(), known);
        known
    }

    fn last(&self, binding: &BindingId) -> Option<KnownLimits> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(binding)
            .copied()
    }
}

impl Shop {
    pub async fn create_user(&self, new: NewUser) -> ShopResult<UserView> {
        let user = new.into_user();
        match self.store.insert_user(&user).await {
            Ok(()) => Ok(UserView { user, limits: None }),
            Err(StoreError::Conflict(_)) => Err(ShopError::UserExists),
            Err(e) => Err(e.into()),
        }
    }

    /// The user as the shop keeps it (payment-svc is not asked).
    pub async fn user(&self, id: &MerchantUserId) -> ShopResult<User> {
        self.store
            .get_user(id)
            .await?
            .ok_or(ShopError::UserNotFound)
    }

    /// The user; with a card on file, its limits as payment-svc has them
    /// now. A binding the shopper revoked at payment-svc is forgotten here.
    pub async fn get_user(&self, id: &MerchantUserId) -> ShopResult<UserView> {
        let user = self.user(id).await?;
        let Some(binding_id) = user.card.as_ref().map(|c| c.binding_id.clone()) else {
            return Ok(UserView { user, limits: None });
        };
        let bindings = match self.payments.bindings_of(&user.id).await {
            Ok(bindings) => bindings,
            // The card stays on file; today's figures are the last known.
            Err(e) => {
                tracing::warn!(error = %e, "could not read limits from payment-svc in time");
                let limits = self.limits.last(&binding_id);
                return Ok(UserView { user, limits });
            }
        };
        match bindings.into_iter().find(|b| b.id == binding_id) {
            Some(b) if b.status == BindingStatus::Active => {
                let mut user = user;
                // payment-svc rotated its token key: keep the token it
                // issues now (the old one pays only while the old key is
                // configured).
                if let Some(card) = user.card.as_mut().filter(|c| c.token != b.token) {
                    card.token = b.token.clone();
                    self.store.set_card(&user.id, Some(card)).await?;
                    tracing::info!(user_id = %user.id, "binding token refreshed");
                }
                Ok(UserView {
                    limits: b.limits.map(|l| self.limits.remember(&binding_id, l)),
                    user,
                })
            }
            _ => {
                self.store.clear_card_if(&user.id, &binding_id).await?;
                Ok(UserView {
                    user: self.user(id).await?,
                    limits: None,
                })
            }
        }
    }

    /// The first binding request: returns payment-svc's session.
    pub async fn start_binding(
        &self,
        user_id: &MerchantUserId,
        presentation: Presentation,
        return_url: &str,
    ) -> ShopResult<SessionInfo> {
        let user = self.user(user_id).await?;
        let session = self
            .payments
            .open_session(BindingRequest {
                user_id: user.id.clone(),
                presentation,
                return_url: self.return_url(return_url),
                prefill: prefill(&user),
                purchase: None,
                idempotency_key: IdempotencyKey::derived(paybind_shared::ids::new_id("bind")),
            })
            .await?;
        self.store
            .insert_session(&session.id, &user.id, None, now_ms())
            .await?;
        Ok(session)
    }

    /// Keeps a completed session's binding as the user's card on file.
    pub(super) async fn keep_card(
        &self,
        user_id: &MerchantUserId,
        binding: &BindingInfo,
    ) -> ShopResult<()> {
        let card = CardOnFile {
            binding_id: binding.id.clone(),
            token: binding.token.clone(),
            brand: binding.brand,
            last4: binding.last4.clone(),
            expiry: binding.expiry,
            bound_ms: now_ms(),
        };
        self.store.set_card(user_id, Some(&card)).await?;
        tracing::info!(%user_id, binding_id = %binding.id, "card on file stored");
        Ok(())
    }

    /// Unbinds at payment-svc, then forgets the token. A binding payment-svc
    /// no longer knows or already revoked is forgotten all the same.
    pub async fn remove_card(&self, user_id: &MerchantUserId) -> ShopResult<UserView> {
        let user = self.user(user_id).await?;
        let Some(card) = &user.card else {
            return Err(ShopError::NoCardOnFile);
        };
        let result = self
            .payments
            .unbind(
                &card.token,
                &user.id,
                "card removed by the shopper at the shop",
            )
            .await;
        match result {
            Ok(()) => {}
            Err(e) if e.refusal_reason() == Some("TOKEN_NOT_FOUND") => {}
            Err(e) => return Err(e.into()),
        }
        self.store.clear_card_if(&user.id, &card.binding_id).await?;
        tracing::info!(%user_id, binding_id = %card.binding_id, "card removed");
        Ok(UserView {
            user: self.user(user_id).await?,
            limits: None,
        })
    }
}

pub(super) fn prefill(user: &User) -> Prefill {
    Prefill {
        // A shopper who gave no name at sign-up goes by the username: that
        // is no name for the bank to check, so the page starts empty.
        full_name: if user.display_name == user.id.as_str() {
            String::new()
        } else {
            user.display_name.clone()
        },
        phone: user
            .phone
            .as_ref()
            .map(|p| p.e164().to_owned())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use paybind_shared::model::Presentation;

    use super::*;

    fn user(id: &str, display_name: &str) -> User {
        User {
            id: MerchantUserId::parse(id).expect("id"),
            display_name: display_name.into(),
            phone: None,
            created_ms: 0,
            card: None,
            presentation: Presentation::Redirect,
        }
    }

    #[test]
    fn the_page_is_prefilled_with_a_name_only_when_the_shopper_gave_one() {
        assert_eq!(prefill(&user("zhang", "Zhang San")).full_name, "Zhang San");
        // Signed up without a name: the username is no name for a bank.
        assert_eq!(prefill(&user("zhang", "zhang")).full_name, "");
    }
}

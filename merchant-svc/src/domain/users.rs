//! Users, their card on file, binding, and removing the card.
use paybind_proto::payment::v1 as pb;

use super::{identifier, invalid, now_ms, presentation, Shop, ShopError, ShopResult};
use crate::store::{StoreError, StoredBinding, UserRow};

/// A user with what payment-svc says of their binding's limits today.
pub struct UserView {
    pub row: UserRow,
    pub limits: Option<pb::AuthFreeLimits>,
}

impl Shop {
    pub async fn create_user(
        &self,
        id: &str,
        display_name: &str,
        phone: &str,
    ) -> ShopResult<UserView> {
        let id = identifier(id, "user_id")?;
        let name = display_name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(invalid(
                "display_name",
                "display_name must be 1 to 100 characters",
            ));
        }
        let phone = phone.trim();
        if !phone.is_empty()
            && (phone.len() > 20
                || !phone
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b" +-".contains(&b)))
        {
            return Err(invalid(
                "phone",
                "phone must be digits, e.g. +8613800138000",
            ));
        }
        let row = UserRow {
            id,
            display_name: name.to_owned(),
            phone: (!phone.is_empty()).then(|| phone.to_owned()),
            created_ms: now_ms(),
            binding_id: None,
            binding_token: None,
            card_brand: None,
            card_last4: None,
            exp_month: None,
            exp_year: None,
            bound_ms: None,
        };
        match self.store.insert_user(&row).await {
            Ok(()) => Ok(UserView { row, limits: None }),
            Err(StoreError::Conflict) => Err(ShopError::UserExists),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn user_row(&self, id: &str) -> ShopResult<UserRow> {
        self.store
            .get_user(id)
            .await?
            .ok_or(ShopError::UserNotFound)
    }

    /// The user; with a card on file, its limits as payment-svc has them
    /// now. A binding the shopper revoked at payment-svc is forgotten here.
    pub async fn get_user(&self, id: &str) -> ShopResult<UserView> {
        let row = self.user_row(id).await?;
        let Some(binding_id) = row.binding_id.clone() else {
            return Ok(UserView { row, limits: None });
        };
        let listed = self
            .payments
            .list_bindings(pb::ListBindingsRequest {
                merchant_user_id: row.id.clone(),
                page_size: 100,
                page_token: String::new(),
                include_revoked: true,
            })
            .await;
        let bindings = match listed {
            Ok(list) => list.bindings,
            // The card stays on file; only today's figures are unknown.
            Err(status) => {
                tracing::warn!(code = ?status.code(), "could not read limits from payment-svc");
                return Ok(UserView { row, limits: None });
            }
        };
        match bindings.into_iter().find(|b| b.binding_id == binding_id) {
            Some(b) if b.status == pb::BindingStatus::Active as i32 => Ok(UserView {
                row,
                limits: b.limits,
            }),
            _ => {
                self.store.clear_binding_if(&row.id, &binding_id).await?;
                Ok(UserView {
                    row: self.user_row(id).await?,
                    limits: None,
                })
            }
        }
    }

    /// The first binding request: returns payment-svc's session.
    pub async fn start_binding(
        &self,
        user_id: &str,
        presentation_value: i32,
        return_url: &str,
    ) -> ShopResult<pb::BindSession> {
        let user = self.user_row(user_id).await?;
        let session = self
            .payments
            .bind(pb::BindRequest {
                merchant_user_id: user.id.clone(),
                presentation: presentation(presentation_value) as i32,
                return_url: self.return_url(return_url),
                prefill: Some(prefill(&user)),
                idempotency_key: paybind_shared::ids::new_id("bind"),
            })
            .await
            .map_err(|s| ShopError::from_payment(s, None))?
            .session
            .ok_or_else(|| anyhow::anyhow!("payment-svc returned no session"))?;
        self.store
            .insert_session(&session.session_id, &user.id, None, now_ms())
            .await?;
        Ok(session)
    }

    pub(super) fn return_url(&self, requested: &str) -> String {
        if requested.is_empty() {
            self.default_return_url.clone()
        } else {
            requested.to_owned()
        }
    }

    /// Keeps a completed session's binding as the user's card on file.
    pub(super) async fn store_binding(
        &self,
        user_id: &str,
        binding: &pb::Binding,
    ) -> ShopResult<()> {
        let card = binding.card.clone().unwrap_or_default();
        let stored = StoredBinding {
            binding_id: binding.binding_id.clone(),
            token: binding.binding_token.clone(),
            brand: pb::CardBrand::try_from(card.brand)
                .map(|b| b.as_str_name().trim_start_matches("CARD_BRAND_").to_owned())
                .unwrap_or_default(),
            last4: card.last4,
            exp_month: i64::from(card.expiry_month),
            exp_year: i64::from(card.expiry_year),
            bound_ms: now_ms(),
        };
        self.store.set_binding(user_id, Some(&stored)).await?;
        tracing::info!(user_id, binding_id = %binding.binding_id, "card on file stored");
        Ok(())
    }

    /// Unbinds at payment-svc, then forgets the token. A binding payment-svc
    /// no longer knows or already revoked is forgotten all the same.
    pub async fn remove_card(&self, user_id: &str) -> ShopResult<UserView> {
        let user = self.user_row(user_id).await?;
        let (Some(binding_id), Some(token)) = (user.binding_id.clone(), user.binding_token.clone())
        else {
            return Err(ShopError::NoCardOnFile);
        };
        let result = self
            .payments
            .unbind(pb::UnbindRequest {
                binding_token: token,
                merchant_user_id: user.id.clone(),
                reason: "card removed by the shopper at the shop".into(),
            })
            .await;
        match result {
            Ok(_) => {}
            Err(status)
                if paybind_shared::grpc::reason_of(&status).as_deref()
                    == Some("TOKEN_NOT_FOUND") => {}
            Err(status) => return Err(ShopError::from_payment(status, None)),
        }
        self.store.clear_binding_if(&user.id, &binding_id).await?;
        tracing::info!(user_id, %binding_id, "card removed");
        Ok(UserView {
            row: self.user_row(user_id).await?,
            limits: None,
        })
    }
}

pub(super) fn prefill(user: &UserRow) -> pb::ShopperPrefill {
    pb::ShopperPrefill {
        full_name: user.display_name.clone(),
        phone: user.phone.clone().unwrap_or_default(),
    }
}

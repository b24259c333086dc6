//! Bindings as merchants see them, unbinding, and listing.
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};

use super::{
    clock::now_ms,
    error::{DomainError, DomainResult, Invalid},
    fields,
    merchants::Merchant,
    Services,
};
use crate::store::{BindingQuery, BindingRow};

/// A binding with its token and what is left of today's limit.
#[derive(Debug, Clone)]
pub struct BindingView {
    pub row: BindingRow,
    pub token: String,
    pub remaining_today: i64,
}

/// One page of bindings.
pub struct BindingPage {
    pub bindings: Vec<BindingView>,
    pub next_page_token: String,
}

impl Services {
    pub fn binding_view(&self, row: BindingRow) -> DomainResult<BindingView> {
        let token = self
            .tokens
            .token_for(&row.merchant_id, &row.merchant_user_id, &row.id)
            .ok_or_else(|| anyhow::anyhow!("malformed binding id {}", row.id))?;
        let used = if row.usage_day == self.today(now_ms()) {
            row.usage_amount
        } else {
            0
        };
        Ok(BindingView {
            remaining_today: (row.daily_limit - used).max(0),
            token,
            row,
        })
    }

    /// The binding a token names for this merchant and user.
    pub fn binding_id_from_token(
        &self,
        merchant: &Merchant,
        token: &str,
        merchant_user_id: &str,
    ) -> DomainResult<String> {
        self.tokens
            .binding_id_of(token, &merchant.id, merchant_user_id)
            .ok_or(DomainError::TokenNotFound)
    }

    /// Ends a binding. Unbinding a revoked binding returns it unchanged.
    pub async fn unbind(
        &self,
        merchant: &Merchant,
        token: &str,
        merchant_user_id: &str,
        reason: &str,
    ) -> DomainResult<BindingView> {
        let binding_id = self.binding_id_from_token(merchant, token, merchant_user_id)?;
        let reason = fields::free_text(reason, 200, "reason").map_err(|e| e.at("reason"))?;
        let reason = if reason.is_empty() {
            "unbound by the merchant".to_owned()
        } else {
            reason
        };
        let row = self
            .store
            .revoke_binding(&merchant.id, &binding_id, &reason, now_ms())
            .await?
            .ok_or(DomainError::TokenNotFound)?;
        tracing::info!(binding_id = %row.id, merchant_id = %merchant.id, "binding revoked");
        self.binding_view(row)
    }

    pub async fn list_bindings(
        &self,
        merchant: &Merchant,
        merchant_user_id: &str,
        page_size: i32,
        page_token: &str,
        include_revoked: bool,
    ) -> DomainResult<BindingPage> {
        let user = fields::identifier(merchant_user_id, "merchant_user_id")
            .map_err(|e| e.at("merchant_user_id"))?;
        let limit = match page_size {
            0 => 20,
            1..=100 => i64::from(page_size),
            _ => {
                return Err(
                    Invalid::new("INVALID_ARGUMENT", "page_size must be 0 to 100").at("page_size"),
                )
            }
        };
        let after = if page_token.is_empty() {
            None
        } else {
            Some(decode_page_token(page_token).ok_or_else(|| {
                Invalid::new(
                    "INVALID_ARGUMENT",
                    "page_token is not one this service issued",
                )
                .at("page_token")
            })?)
        };
        let rows = self
            .store
            .list_bindings(&BindingQuery {
                merchant_id: merchant.id.clone(),
                merchant_user_id: user,
                include_revoked,
                after,
                limit: limit + 1,
            })
            .await?;
        let more = rows.len() as i64 > limit;
        let rows: Vec<BindingRow> = rows.into_iter().take(limit as usize).collect();
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => encode_page_token(last.created_ms, &last.id),
            _ => String::new(),
        };
        Ok(BindingPage {
            bindings: rows
                .into_iter()
                .map(|row| self.binding_view(row))
                .collect::<DomainResult<_>>()?,
            next_page_token,
        })
    }
}

fn encode_page_token(created_ms: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{created_ms}:{id}"))
}

fn decode_page_token(token: &str) -> Option<(i64, String)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    let (ms, id) = text.split_once(':')?;
    Some((ms.parse().ok()?, id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let t = encode_page_token(123, "bnd_abc");
        assert_eq!(decode_page_token(&t), Some((123, "bnd_abc".to_owned())));
        assert_eq!(decode_page_token("%%%"), None);
        assert_eq!(decode_page_token(&URL_SAFE_NO_PAD.encode("nocolon")), None);
    }
}

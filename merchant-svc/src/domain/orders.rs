//! Reading, listing and refunding orders.
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use paybind_proto::payment::v1 as pb;

use super::{identifier, invalid, now_ms, status, Shop, ShopError, ShopResult};
use crate::store::OrderRow;

impl Shop {
    pub async fn order(&self, id: &str) -> ShopResult<OrderRow> {
        if id.is_empty() || id.len() > 64 {
            return Err(ShopError::OrderNotFound);
        }
        self.store
            .get_order(id)
            .await?
            .ok_or(ShopError::OrderNotFound)
    }

    pub async fn list_orders(
        &self,
        user_id: &str,
        page_size: i32,
        page_token: &str,
    ) -> ShopResult<(Vec<OrderRow>, String)> {
        let user_id = identifier(user_id, "user_id")?;
        let limit = match page_size {
            0 => 20,
            1..=100 => i64::from(page_size),
            _ => return Err(invalid("page_size", "page_size must be 0 to 100")),
        };
        let after = if page_token.is_empty() {
            None
        } else {
            let text = URL_SAFE_NO_PAD
                .decode(page_token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    invalid("page_token", "page_token is not one this service issued")
                })?;
            let (ms, id) = text
                .split_once(':')
                .and_then(|(ms, id)| Some((ms.parse::<i64>().ok()?, id.to_owned())))
                .ok_or_else(|| {
                    invalid("page_token", "page_token is not one this service issued")
                })?;
            Some((ms, id))
        };
        let mut rows = self.store.list_orders(&user_id, after, limit + 1).await?;
        let next = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last()
                .map(|o| URL_SAFE_NO_PAD.encode(format!("{}:{}", o.created_ms, o.id)))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok((rows, next))
    }

    /// Refunds all or part of a paid order through payment-svc, which keeps
    /// the sum of refunds within the payment.
    pub async fn refund_order(
        &self,
        order_id: &str,
        amount: Option<pb::Money>,
        reason: &str,
        key: &str,
    ) -> ShopResult<OrderRow> {
        let order = self.order(order_id).await?;
        let payment_id = match (&order.payment_id, order.status.as_str()) {
            (Some(id), status::PAID) => id.clone(),
            _ => return Err(ShopError::OrderNotRefundable),
        };
        // payment-svc takes keys up to 128 characters; "refund:<order id>:" uses 44.
        if key.is_empty() || key.len() > 80 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "idempotency_key",
                "idempotency_key must be 1 to 80 printable ASCII characters",
            ));
        }
        let refunded = self
            .payments
            .refund(pb::RefundRequest {
                payment_id,
                amount,
                reason: reason.to_owned(),
                idempotency_key: format!("refund:{}:{key}", order.id),
            })
            .await
            .map_err(|s| ShopError::from_payment(s, None))?;
        let total = refunded
            .payment
            .and_then(|p| p.refunded)
            .map(|m| m.amount_minor)
            .unwrap_or(order.refunded_minor);
        // Refunds only grow; a replayed, older answer never lowers the total.
        let total = total.max(order.refunded_minor);
        self.store
            .set_refunded(&order.id, total, now_ms())
            .await?
            .ok_or(ShopError::OrderNotFound)
    }
}

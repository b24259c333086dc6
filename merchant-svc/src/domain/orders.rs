//! Reading, listing and refunding orders.
use paybind_shared::{
    clock::now_ms,
    fields::{Invalid, PageCursor},
    ids::{IdempotencyKey, MerchantUserId, OrderId},
    money::Money,
};

use super::{
    model::{Order, OrderStatus},
    payment::RefundRequest,
    Shop, ShopError, ShopResult,
};

/// The longest refund key a caller may choose: the shop sends
/// `refund:<order id>:<key>` (44 characters and the key), and payment-svc
/// takes keys of up to 128 characters.
const MAX_REFUND_KEY_CHARS: usize = 80;

/// A ListOrders request, parsed.
#[derive(Debug, Clone)]
pub struct OrderListing {
    pub user_id: MerchantUserId,
    pub page_size: i64,
    pub after: Option<PageCursor>,
}

impl Shop {
    pub async fn order(&self, id: &OrderId) -> ShopResult<Order> {
        self.store
            .get_order(id)
            .await?
            .ok_or(ShopError::OrderNotFound)
    }

    pub async fn list_orders(
        &self,
        listing: OrderListing,
    ) -> ShopResult<(Vec<Order>, Option<PageCursor>)> {
        let limit = listing.page_size;
        let mut orders = self
            .store
            .list_orders(&listing.user_id, listing.after, limit + 1)
            .await?;
        let next = if orders.len() as i64 > limit {
            orders.truncate(limit as usize);
            orders.last().map(|o| PageCursor {
                created_ms: o.created_ms,
                id: o.id.as_str().to_owned(),
            })
        } else {
            None
        };
        Ok((orders, next))
    }

    /// Refunds all or part of a paid order through payment-svc, which keeps
    /// the sum of refunds within the payment.
    pub async fn refund_order(
        &self,
        order_id: &OrderId,
        amount: Money,
        reason: &str,
        key: &IdempotencyKey,
    ) -> ShopResult<Order> {
        let order = self.order(order_id).await?;
        let payment_id = match (&order.payment_id, order.status) {
            (Some(id), OrderStatus::Paid) => id.clone(),
            _ => return Err(ShopError::OrderNotRefundable),
        };
        if key.as_str().chars().count() > MAX_REFUND_KEY_CHARS {
            return Err(Invalid::argument(format!(
                "idempotency_key must be 1 to {MAX_REFUND_KEY_CHARS} characters"
            ))
            .at("idempotency_key")
            .into());
        }
        let payment = self
            .payments
            .refund(RefundRequest {
                payment_id,
                amount,
                reason: reason.to_owned(),
                idempotency_key: IdempotencyKey::derived(format!(
                    "refund:{}:{}",
                    order.id,
                    key.as_str()
                )),
            })
            .await?;
        // Refunds only grow; a replayed, older answer never lowers the total.
        let total = payment.refunded_minor.max(order.refunded_minor);
        self.store
            .set_refunded(&order.id, total, now_ms())
            .await?
            .ok_or(ShopError::OrderNotFound)
    }
}

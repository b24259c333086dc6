//! A shopper's orders: the order page (its status, why it was declined,
//! the payment page it waits on) and refunds.
use askama::Template;
use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use paybind_shared::{
    ids::{IdempotencyKey, OrderId},
    model::Presentation,
    money::Money,
};
use serde::Deserialize;

use super::{
    page::{self, Flash, Nav, Notice, NoticeQuery},
    pay::{self, PaymentBox},
    session::{Posted, Shopper},
    Web,
};
use crate::domain::{
    model::{Order, OrderStatus},
    ShopError,
};

/// The refund form of a paid order with something left to refund: the
/// amount left when the page was made, and this rendering's key.
pub struct RefundView {
    pub amount_minor: i64,
    pub amount: String,
    pub key: String,
}

/// An order as pages show it.
pub struct OrderView {
    pub id: String,
    pub description: String,
    pub amount: String,
    /// "Paid", "Declined", …
    pub status: &'static str,
    /// A CSS class for the status.
    pub status_class: &'static str,
    /// Not settled yet (pending, or awaiting the shopper).
    pub waiting: bool,
    pub refunded: Option<String>,
    pub paid_with_card_on_file: bool,
    pub refund: Option<RefundView>,
}

pub fn view(order: &Order) -> OrderView {
    let currency = order.amount.currency();
    let left = order.amount.amount_minor() - order.refunded_minor;
    let (status, status_class) = match order.status {
        OrderStatus::PendingPayment => ("Payment pending", "pending"),
        OrderStatus::AwaitingShopper => ("Awaiting payment", "pending"),
        OrderStatus::Paid if left <= 0 => ("Refunded", "refunded"),
        OrderStatus::Paid if order.refunded_minor > 0 => ("Paid, partly refunded", "paid"),
        OrderStatus::Paid => ("Paid", "paid"),
        OrderStatus::Declined => ("Declined", "failed"),
        OrderStatus::Cancelled => ("Cancelled", "failed"),
    };
    OrderView {
        id: order.id.as_str().to_owned(),
        description: order.description.clone(),
        amount: page::money(order.amount),
        status,
        status_class,
        waiting: matches!(
            order.status,
            OrderStatus::PendingPayment | OrderStatus::AwaitingShopper
        ),
        refunded: (order.refunded_minor > 0).then(|| page::minor(order.refunded_minor, currency)),
        paid_with_card_on_file: order.status == OrderStatus::Paid && order.paid_with_card_on_file,
        refund: (order.status == OrderStatus::Paid && left > 0).then(|| RefundView {
            amount_minor: left,
            amount: page::minor(left, currency),
            key: page::form_key(),
        }),
    }
}

/// A card network's reason as words: `INSUFFICIENT_FUNDS` → "insufficient funds".
fn words(reason: &str) -> String {
    reason.replace('_', " ").to_lowercase()
}

/// What the shopper should know of an order's state, and can do about it.
fn explanation(order: &Order) -> Option<Flash> {
    let reason = order.decline_reason.as_deref().unwrap_or_default();
    match order.status {
        OrderStatus::Paid | OrderStatus::AwaitingShopper => None,
        OrderStatus::PendingPayment => Some(Flash::notice(
            "The payment service could not be reached yet. Your order is kept and settled \
             automatically, with the same request, so it is never charged twice. Check again in \
             a moment.",
        )),
        OrderStatus::Declined if reason == "LIMIT_EXCEEDED" => Some(Flash::error(
            "Declined: this amount is above what your card on file may pay without \
             authentication (its limits per payment and per day are on your account page). \
             Nothing was charged. To buy it anyway, remove the card on file and buy again: you \
             then pay on the payment page, with a code.",
        )),
        OrderStatus::Declined => Some(Flash::error(format!(
            "Declined by your card's bank ({}). Nothing was charged.",
            words(if reason.is_empty() {
                "CARD_DECLINED"
            } else {
                reason
            })
        ))),
        OrderStatus::Cancelled => Some(Flash::error(match reason {
            "SESSION_EXPIRED" => {
                "Cancelled: the payment page expired before it was finished. Nothing was charged."
            }
            "SESSION_FAILED" => {
                "Cancelled: the payment was not completed on the payment page (the card was \
                 refused, or the code was wrong too often). Nothing was charged."
            }
            "REFUSED_BY_PAYMENT_SERVICE" => {
                "Cancelled: the payment service refused this order. Nothing was charged."
            }
            _ => "Cancelled. Nothing was charged.",
        })),
    }
}

#[derive(Template)]
#[template(path = "order.html")]
struct OrderPage {
    nav: Nav,
    flash: Vec<Flash>,
    order: OrderView,
    /// Paid on the payment page (BindAndPay): the card is now on file.
    paid_with_new_card: bool,
    /// Waiting for the shopper on a page shown inside the shop.
    payment: Option<PaymentBox>,
    /// Waiting for the shopper on a page they left (redirect).
    continue_url: Option<String>,
}

pub async fn page(
    State(web): State<Web>,
    shopper: Shopper,
    Path(raw_id): Path<String>,
    Query(query): Query<NoticeQuery>,
) -> Response {
    let nav = Nav::of(&shopper.session);
    let Ok(order_id) = OrderId::parse(&raw_id) else {
        return page::shop_error(nav, ShopError::OrderNotFound);
    };
    let mut order = match web.shop().order_of(&shopper.id, &order_id).await {
        Ok(order) => order,
        Err(e) => return page::shop_error(nav, e),
    };
    // The shopper may have finished the page without the shop hearing of
    // it (the script did not run, the window closed): ask payment-svc.
    if let (OrderStatus::AwaitingShopper, Some(waiting)) = (order.status, &order.page) {
        match web.shop().complete_session(&waiting.session_id).await {
            Ok(outcome) => order = outcome.order.unwrap_or(order),
            Err(e) => {
                tracing::warn!(order_id = %order.id, error = %e, "could not read the order's session")
            }
        }
    }
    let mut flash = query.flash();
    flash.extend(explanation(&order));
    let (mut payment, mut continue_url) = (None, None);
    if let (OrderStatus::AwaitingShopper, Some(waiting)) = (order.status, &order.page) {
        if order.presentation == Presentation::Redirect {
            match pay::page_url(&waiting.page_url) {
                Some(url) => continue_url = Some(url.to_string()),
                None => return pay::unusable_page(nav),
            }
        } else {
            match PaymentBox::new(
                &waiting.page_url,
                &waiting.session_id,
                order.presentation,
                true,
            ) {
                Some(b) => payment = Some(b),
                None => return pay::unusable_page(nav),
            }
        }
    }
    let page = OrderPage {
        nav,
        flash,
        paid_with_new_card: order.status == OrderStatus::Paid && !order.paid_with_card_on_file,
        order: view(&order),
        payment,
        continue_url,
    };
    let response = page::html(StatusCode::OK, &page);
    match &page.payment {
        Some(payment) => payment.apply_csp(response),
        None => response,
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RefundForm {
    key: String,
    amount_minor: String,
}

/// Refunds what was left of a paid order when its page was made. The
/// form's key makes a second send of the same form the same refund.
pub async fn refund(
    State(web): State<Web>,
    shopper: Shopper,
    Path(raw_id): Path<String>,
    Posted(form): Posted<RefundForm>,
) -> Response {
    let nav = Nav::of(&shopper.session);
    let Ok(order_id) = OrderId::parse(&raw_id) else {
        return page::shop_error(nav, ShopError::OrderNotFound);
    };
    let (Some(key), Ok(amount_minor)) = (
        page::parse_form_key(&form.key),
        form.amount_minor.parse::<i64>(),
    ) else {
        return page::bad_request("This form is incomplete. Reload the page and try again.");
    };
    let order = match web.shop().order_of(&shopper.id, &order_id).await {
        Ok(order) => order,
        Err(e) => return page::shop_error(nav, e),
    };
    let Ok(amount) = Money::new(amount_minor, order.amount.currency()) else {
        return page::bad_request("This form is incomplete. Reload the page and try again.");
    };
    let key = IdempotencyKey::derived(format!("web:{key}"));
    match web
        .shop()
        .refund_order(
            &order.id,
            amount,
            "refunded by the shopper at the storefront",
            &key,
        )
        .await
    {
        Ok(order) => Redirect::to(&format!(
            "/orders/{}?notice={}",
            order.id,
            Notice::Refunded.code()
        ))
        .into_response(),
        Err(e) => page::shop_error(nav, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_words() {
        assert_eq!(words("INSUFFICIENT_FUNDS"), "insufficient funds");
    }
}

//! The catalogue and buying: with a card on file the purchase is paid at
//! once (no page, no code); without one the order waits for the shopper
//! on the payment institution's page (BindAndPay), shown as they chose.
use askama::Template;
use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use paybind_shared::ids::IdempotencyKey;
use serde::Deserialize;

use super::{
    catalogue,
    page::{self, Flash, Nav},
    pay,
    session::{Posted, Session, Shopper},
    Web,
};
use crate::domain::{
    model::{Order, OrderStatus},
    CheckoutInput, ShopError,
};

struct ItemView {
    id: &'static str,
    name: &'static str,
    blurb: &'static str,
    price: String,
    /// This rendering's idempotency key for buying the item.
    key: String,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    nav: Nav,
    flash: Vec<Flash>,
    items: Vec<ItemView>,
    signed_in: bool,
    /// The card on file, e.g. `VISA •••• 4242`.
    card: Option<String>,
    /// How a payment page would be shown.
    presentation: &'static str,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct HomeQuery {
    notice: String,
    /// A payment page that returned to the shop's default return URL.
    session_id: String,
}

pub async fn home(
    State(web): State<Web>,
    session: Session,
    Query(query): Query<HomeQuery>,
) -> Response {
    if !query.session_id.is_empty() {
        return Redirect::to(&format!(
            "/bound?session_id={}",
            page::query_value(&query.session_id)
        ))
        .into_response();
    }
    let nav = Nav::of(&session);
    let flash = page::NoticeQuery {
        notice: query.notice,
    }
    .flash();
    let user = match session.user() {
        Some(id) => match web.shop().user(id).await {
            Ok(user) => Some(user),
            Err(e) => return page::shop_error(nav, e),
        },
        None => None,
    };
    let items = catalogue::ITEMS
        .iter()
        .map(|item| ItemView {
            id: item.id,
            name: item.name,
            blurb: item.blurb,
            price: page::minor(
                item.price_minor,
                // Checked by the catalogue's test.
                item.price()
                    .map(|m| m.currency())
                    .unwrap_or(web.shop().currency),
            ),
            key: page::form_key(),
        })
        .collect();
    let card = user
        .as_ref()
        .and_then(|u| u.card.as_ref())
        .map(|c| page::card_label(c.brand, &c.last4));
    let presentation = user
        .as_ref()
        .map(|u| pay::presentation_label(u.presentation))
        .unwrap_or_default();
    page::html(
        StatusCode::OK,
        &HomePage {
            nav,
            flash,
            items,
            signed_in: user.is_some(),
            card,
            presentation,
        },
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct BuyForm {
    item: String,
    key: String,
}

pub async fn buy(
    State(web): State<Web>,
    shopper: Shopper,
    Posted(form): Posted<BuyForm>,
) -> Response {
    let nav = Nav::of(&shopper.session);
    let Some(item) = catalogue::find(&form.item) else {
        return page::bad_request("There is no such item. Go back to the shop and choose one.");
    };
    let Some(key) = page::parse_form_key(&form.key) else {
        return page::bad_request("This form is incomplete. Reload the page and try again.");
    };
    let (user, amount) = match (web.shop().user(&shopper.id).await, item.price()) {
        (Ok(user), Ok(amount)) => (user, amount),
        (Err(e), _) => return page::shop_error(nav, e),
        (_, Err(e)) => return page::shop_error(nav, ShopError::Internal(e.into())),
    };
    let input = CheckoutInput {
        user_id: user.id.clone(),
        amount,
        description: item.name.to_owned(),
        presentation: user.presentation,
        return_url: web.0.return_url.clone(),
        // Scoped to the shopper: a key is never another shopper's order.
        idempotency_key: IdempotencyKey::derived(format!("web:{}:{key}", user.id)),
    };
    match web.shop().checkout(input).await {
        Ok(order) => after_checkout(nav, &order),
        // Kept, and settled when payment-svc answers: the order page says so.
        Err(ShopError::PaymentUnavailable { order_id: Some(id) }) => {
            Redirect::to(&format!("/orders/{id}")).into_response()
        }
        Err(e) => page::shop_error(nav, e),
    }
}

/// Where a checkout leads: straight to the payment page for a redirect,
/// else to the order (paid, declined, or with the page inside).
fn after_checkout(nav: Nav, order: &Order) -> Response {
    let order_page = format!("/orders/{}", order.id);
    match (&order.status, &order.page) {
        (OrderStatus::AwaitingShopper, Some(page))
            if order.presentation == paybind_shared::model::Presentation::Redirect =>
        {
            match pay::page_url(&page.page_url) {
                Some(url) => Redirect::to(url.as_str()).into_response(),
                None => pay::unusable_page(nav),
            }
        }
        _ => Redirect::to(&order_page).into_response(),
    }
}

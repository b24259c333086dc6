//! The shopper's account: the card on file with its auth-free limits and
//! what is left of them today, removing it, binding one (in each of the
//! three presentations), the presentation setting, and order history.
use askama::Template;
use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use paybind_shared::{clock::now_ms, fields::PageCursor, model::Presentation};
use serde::Deserialize;

use super::{
    orders::{self, OrderView},
    page::{self, Flash, Nav, Notice, NoticeQuery},
    pay,
    session::{Posted, Shopper},
    Web,
};
use crate::domain::{OrderListing, ShopError, UserView};

/// Orders per page of the history.
const ORDERS_PER_PAGE: i64 = 20;

struct LimitsView {
    per_payment: String,
    per_day: String,
    left_today: String,
    /// Set when the figures are the last known ones (payment-svc was slow).
    as_of: Option<String>,
}

struct CardView {
    label: String,
    expiry: String,
    limits: Option<LimitsView>,
}

struct PresentationChoice {
    value: &'static str,
    label: &'static str,
    checked: bool,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    nav: Nav,
    flash: Vec<Flash>,
    username: String,
    display_name: String,
    card: Option<CardView>,
    presentations: Vec<PresentationChoice>,
    orders: Vec<OrderView>,
    /// The next page of orders (`?after=`), if there is one.
    more: Option<String>,
}

fn card_view(view: &UserView) -> Option<CardView> {
    let card = view.user.card.as_ref()?;
    let limits = view.limits.map(|known| {
        let l = known.limits;
        let age_s = (now_ms() - known.as_of_ms) / 1000;
        LimitsView {
            per_payment: page::money(l.per_payment),
            per_day: page::money(l.per_day),
            left_today: page::minor(l.remaining_today, l.currency()),
            as_of: (age_s > 5).then(|| match age_s {
                0..=119 => format!("{age_s} seconds ago"),
                _ => format!("{} minutes ago", age_s / 60),
            }),
        }
    });
    Some(CardView {
        label: page::card_label(card.brand, &card.last4),
        expiry: format!("{:02}/{}", card.expiry.month, card.expiry.year),
        limits,
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AccountQuery {
    notice: String,
    after: String,
}

pub async fn page(
    State(web): State<Web>,
    shopper: Shopper,
    Query(query): Query<AccountQuery>,
) -> Response {
    let nav = Nav::of(&shopper.session);
    let after = match PageCursor::decode(&query.after) {
        Ok(after) => after,
        Err(_) => return page::bad_request("This link is broken: open your account again."),
    };
    let view = match web.shop().get_user(&shopper.id).await {
        Ok(view) => view,
        Err(e) => return page::shop_error(nav, e),
    };
    let listing = OrderListing {
        user_id: shopper.id.clone(),
        page_size: ORDERS_PER_PAGE,
        after,
    };
    let (orders, next) = match web.shop().list_orders(listing).await {
        Ok(found) => found,
        Err(e) => return page::shop_error(nav, e),
    };
    let chosen = view.user.presentation;
    let presentations = [
        Presentation::Redirect,
        Presentation::Embedded,
        Presentation::Popup,
    ]
    .into_iter()
    .map(|p| PresentationChoice {
        value: pay::presentation_value(p),
        label: pay::presentation_label(p),
        checked: p == chosen,
    })
    .collect();
    page::html(
        StatusCode::OK,
        &AccountPage {
            flash: NoticeQuery {
                notice: query.notice,
            }
            .flash(),
            nav,
            username: view.user.id.as_str().to_owned(),
            display_name: view.user.display_name.clone(),
            card: card_view(&view),
            presentations,
            orders: orders.iter().map(orders::view).collect(),
            more: next.map(|cursor| page::query_value(&cursor.encode())),
        },
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PresentationForm {
    presentation: String,
}

fn account_with(notice: Notice) -> Response {
    Redirect::to(&format!("/account?notice={}", notice.code())).into_response()
}

pub async fn set_presentation(
    State(web): State<Web>,
    shopper: Shopper,
    Posted(form): Posted<PresentationForm>,
) -> Response {
    let Some(presentation) = pay::parse_presentation(&form.presentation) else {
        return page::bad_request("Choose one of the three ways to show the payment page.");
    };
    match web.shop().set_presentation(&shopper.id, presentation).await {
        Ok(()) => account_with(Notice::PresentationSaved),
        Err(e) => page::shop_error(Nav::of(&shopper.session), e),
    }
}

pub async fn remove_card(
    State(web): State<Web>,
    shopper: Shopper,
    Posted(_): Posted<serde::de::IgnoredAny>,
) -> Response {
    match web.shop().remove_card(&shopper.id).await {
        // Already gone (a second click): the same outcome.
        Ok(_) | Err(ShopError::NoCardOnFile) => account_with(Notice::CardRemoved),
        Err(e) => page::shop_error(Nav::of(&shopper.session), e),
    }
}

/// Starts binding a card (payment-svc's Bind), shown as the button chose.
pub async fn bind(
    State(web): State<Web>,
    shopper: Shopper,
    Posted(form): Posted<PresentationForm>,
) -> Response {
    let nav = Nav::of(&shopper.session);
    let Some(presentation) = pay::parse_presentation(&form.presentation) else {
        return page::bad_request("Choose one of the three ways to show the payment page.");
    };
    let session = match web
        .shop()
        .start_binding(&shopper.id, presentation, &web.0.return_url)
        .await
    {
        Ok(session) => session,
        Err(e) => return page::shop_error(nav, e),
    };
    if presentation == Presentation::Redirect {
        return match pay::page_url(&session.page_url) {
            Some(url) => Redirect::to(url.as_str()).into_response(),
            None => pay::unusable_page(nav),
        };
    }
    Redirect::to(&format!(
        "/bind/{}?presentation={}",
        session.id,
        pay::presentation_value(presentation)
    ))
    .into_response()
}

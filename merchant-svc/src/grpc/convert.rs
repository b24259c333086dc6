//! Shop rows to wire messages.
use paybind_proto::{merchant::v1 as mpb, payment::v1 as pb};

use crate::{
    domain::{status, users::UserView},
    store::OrderRow,
};

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn money(amount_minor: i64, currency: &str) -> pb::Money {
    pb::Money {
        amount_minor,
        currency: currency.to_owned(),
    }
}

pub fn user(view: UserView) -> mpb::User {
    let u = view.row;
    let card = u.binding_id.as_ref().map(|_| mpb::CardOnFile {
        brand: u
            .card_brand
            .as_deref()
            .and_then(|b| pb::CardBrand::from_str_name(&format!("CARD_BRAND_{b}")))
            .unwrap_or(pb::CardBrand::Other) as i32,
        last4: u.card_last4.clone().unwrap_or_default(),
        expiry_month: u.exp_month.unwrap_or(0) as i32,
        expiry_year: u.exp_year.unwrap_or(0) as i32,
        limits: view.limits,
        bound_time: u.bound_ms.map(timestamp),
    });
    mpb::User {
        user_id: u.id,
        display_name: u.display_name,
        phone: u.phone.unwrap_or_default(),
        card,
        create_time: Some(timestamp(u.created_ms)),
    }
}

pub fn order(o: OrderRow) -> mpb::Order {
    let status = match o.status.as_str() {
        status::PENDING_PAYMENT => mpb::OrderStatus::PendingPayment,
        status::AWAITING_SHOPPER => mpb::OrderStatus::AwaitingShopper,
        status::PAID => mpb::OrderStatus::Paid,
        status::DECLINED => mpb::OrderStatus::Declined,
        status::CANCELLED => mpb::OrderStatus::Cancelled,
        _ => mpb::OrderStatus::Unspecified,
    };
    let awaiting = status == mpb::OrderStatus::AwaitingShopper;
    mpb::Order {
        amount: Some(money(o.amount_minor, &o.currency)),
        refunded: Some(money(o.refunded_minor, &o.currency)),
        order_id: o.id,
        user_id: o.user_id,
        description: o.description,
        status: status as i32,
        decline_reason: o.decline_reason.unwrap_or_default(),
        payment_id: o.payment_id.unwrap_or_default(),
        session_id: if awaiting {
            o.session_id.unwrap_or_default()
        } else {
            String::new()
        },
        binding_page_url: if awaiting {
            o.page_url.unwrap_or_default()
        } else {
            String::new()
        },
        paid_with_card_on_file: o.paid_with_card_on_file,
        create_time: Some(timestamp(o.created_ms)),
    }
}

//! Wire ⇄ the shop's domain, and nothing else. Requests are destructured
//! whole and every field parsed before any is refused.
use paybind_proto::{merchant::v1 as mpb, payment::v1 as pb};
use paybind_shared::{
    fields::{free_text, page_size, required_text, AllOk, At, PageCursor, Rejected},
    ids::{IdempotencyKey, MerchantUserId},
    model::Presentation,
    person::Phone,
    wire::{
        amount_to_wire, card_brand_to_wire, money_from_wire, money_to_wire, presentation_from_wire,
        timestamp,
    },
};

use crate::domain::{
    feed::{EventOutcome, FeedStatus},
    model::{Order, OrderStatus},
    payment::{LimitsToday, ShopperEntry},
    CheckoutInput, NewUser, OrderListing, UserView,
};

/// Free text fields: descriptions and reasons.
const TEXT_MAX: usize = 200;

/// The shop's presentation: unset means a redirect (as documented); a value
/// that is not one of the three is refused.
pub fn presentation(value: i32) -> Result<Presentation, Rejected> {
    presentation_from_wire(value)
        .map(|p| p.unwrap_or(Presentation::Redirect))
        .at("presentation")
}

/// A page size from a request: 1-100, 0 means 20.
pub fn feed_page_size(raw: i32) -> Result<i64, Rejected> {
    page_size(raw).at("page_size")
}

/// The shop's place in payment-svc's event feed.
pub fn event_feed(status: FeedStatus) -> mpb::GetEventFeedResponse {
    let FeedStatus { position, recent } = status;
    mpb::GetEventFeedResponse {
        update_time: (!position.cursor.is_empty()).then(|| timestamp(position.updated_ms)),
        cursor: position.cursor,
        recent: recent
            .into_iter()
            .map(|e| mpb::AppliedEvent {
                event_id: e.event_id,
                event_type: e.event_type,
                resource_id: e.resource_id,
                resource_version: e.resource_version,
                cursor: e.cursor,
                outcome: match e.outcome {
                    EventOutcome::Applied => "APPLIED",
                    EventOutcome::Stale => "STALE",
                }
                .to_owned(),
                apply_time: Some(timestamp(e.applied_ms)),
            })
            .collect(),
    }
}

pub fn user_id(raw: &str) -> Result<MerchantUserId, Rejected> {
    MerchantUserId::parse(raw).at("user_id")
}

impl TryFrom<mpb::CreateUserRequest> for NewUser {
    type Error = Rejected;

    fn try_from(r: mpb::CreateUserRequest) -> Result<Self, Rejected> {
        let mpb::CreateUserRequest {
            user_id: id,
            display_name,
            phone,
        } = r;
        let phone = match phone.trim() {
            "" => Ok(None),
            p => Phone::parse(p).map(Some).at("phone"),
        };
        let (id, display_name, phone) = (
            user_id(&id),
            required_text(&display_name, 100, "display_name").at("display_name"),
            phone,
        )
            .all_ok()?;
        Ok(Self {
            id,
            display_name,
            phone,
        })
    }
}

impl TryFrom<mpb::CheckoutRequest> for CheckoutInput {
    type Error = Rejected;

    fn try_from(r: mpb::CheckoutRequest) -> Result<Self, Rejected> {
        let mpb::CheckoutRequest {
            user_id: id,
            amount,
            description,
            presentation: p,
            return_url,
            idempotency_key,
        } = r;
        let (user_id, amount, description, presentation, idempotency_key) = (
            user_id(&id),
            money_from_wire(amount.as_ref()).at("amount"),
            free_text(&description, TEXT_MAX, "description").at("description"),
            presentation(p),
            IdempotencyKey::parse(&idempotency_key).at("idempotency_key"),
        )
            .all_ok()?;
        Ok(Self {
            user_id,
            amount,
            description,
            presentation,
            return_url,
            idempotency_key,
        })
    }
}

impl TryFrom<mpb::ListOrdersRequest> for OrderListing {
    type Error = Rejected;

    fn try_from(r: mpb::ListOrdersRequest) -> Result<Self, Rejected> {
        let mpb::ListOrdersRequest {
            user_id: id,
            page_size: size,
            page_token,
        } = r;
        let (user_id, page_size, after) = (
            user_id(&id),
            page_size(size).at("page_size"),
            PageCursor::decode(&page_token).at("page_token"),
        )
            .all_ok()?;
        Ok(Self {
            user_id,
            page_size,
            after,
        })
    }
}

/// A RefundOrder request's amount, reason and key.
pub fn refund(
    amount: Option<pb::Money>,
    reason: &str,
    key: &str,
) -> Result<(paybind_shared::money::Money, String, IdempotencyKey), Rejected> {
    (
        money_from_wire(amount.as_ref()).at("amount"),
        free_text(reason, TEXT_MAX, "reason").at("reason"),
        IdempotencyKey::parse(key).at("idempotency_key"),
    )
        .all_ok()
}

/// The shopper's information for direct entry, as entered: payment-svc
/// checks it (and names each field at fault).
pub fn shopper_entry(shopper: Option<pb::ShopperInfo>, card: Option<pb::CardInfo>) -> ShopperEntry {
    let pb::ShopperInfo {
        full_name,
        id_number,
        phone,
    } = shopper.unwrap_or_default();
    let pb::CardInfo {
        number,
        expiry_month,
        expiry_year,
        cvv,
    } = card.unwrap_or_default();
    ShopperEntry {
        full_name,
        id_number,
        phone,
        card_number: number,
        expiry_month,
        expiry_year,
        cvv,
    }
}

/// A session id from a request: one that cannot be an id is not this
/// shop's session.
pub fn session_id(raw: &str) -> Option<paybind_shared::ids::SessionId> {
    paybind_shared::ids::SessionId::parse(raw).ok()
}

/// An order id from a request: one that cannot be an id is not found.
pub fn order_id(raw: &str) -> Option<paybind_shared::ids::OrderId> {
    paybind_shared::ids::OrderId::parse(raw).ok()
}

fn limits(l: LimitsToday) -> pb::AuthFreeLimits {
    pb::AuthFreeLimits {
        per_payment: Some(money_to_wire(l.per_payment)),
        per_day: Some(money_to_wire(l.per_day)),
        remaining_today: Some(amount_to_wire(l.remaining_today, l.currency())),
    }
}

pub fn user(view: UserView) -> mpb::User {
    let UserView { user: u, limits: l } = view;
    let card = u.card.map(|c| mpb::CardOnFile {
        brand: card_brand_to_wire(c.brand) as i32,
        last4: c.last4,
        expiry_month: i32::from(c.expiry.month),
        expiry_year: i32::from(c.expiry.year),
        limits: l.map(|k| limits(k.limits)),
        bound_time: Some(timestamp(c.bound_ms)),
        limits_as_of: l.map(|k| timestamp(k.as_of_ms)),
    });
    mpb::User {
        user_id: u.id.into_string(),
        display_name: u.display_name,
        phone: u.phone.map(|p| p.e164().to_owned()).unwrap_or_default(),
        card,
        create_time: Some(timestamp(u.created_ms)),
    }
}

fn order_status(s: OrderStatus) -> mpb::OrderStatus {
    match s {
        OrderStatus::PendingPayment => mpb::OrderStatus::PendingPayment,
        OrderStatus::AwaitingShopper => mpb::OrderStatus::AwaitingShopper,
        OrderStatus::Paid => mpb::OrderStatus::Paid,
        OrderStatus::Declined => mpb::OrderStatus::Declined,
        OrderStatus::Cancelled => mpb::OrderStatus::Cancelled,
    }
}

pub fn order(o: Order) -> mpb::Order {
    let currency = o.amount.currency();
    // The page is shown only while the order waits for the shopper.
    let page = o.page.filter(|_| o.status == OrderStatus::AwaitingShopper);
    let (session_id, binding_page_url) = match page {
        Some(p) => (p.session_id.into_string(), p.page_url),
        None => (String::new(), String::new()),
    };
    mpb::Order {
        amount: Some(money_to_wire(o.amount)),
        refunded: Some(amount_to_wire(o.refunded_minor, currency)),
        order_id: o.id.into_string(),
        user_id: o.user_id.into_string(),
        description: o.description,
        status: order_status(o.status) as i32,
        decline_reason: o.decline_reason.unwrap_or_default(),
        payment_id: o.payment_id.map(|p| p.into_string()).unwrap_or_default(),
        session_id,
        binding_page_url,
        paid_with_card_on_file: o.paid_with_card_on_file,
        create_time: Some(timestamp(o.created_ms)),
    }
}

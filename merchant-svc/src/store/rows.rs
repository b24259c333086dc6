//! Rows as stored, and the one translation between them and the domain's
//! types: each table's columns listed once (`table_row!`), each stored enum
//! spelled once (`stored_enum!`, checked by the migrations' CHECK
//! constraints); an unknown stored value is an error naming its column.
use paybind_shared::{
    db::{StoreError, StoreResult},
    ids::{BindingId, BindingToken, IdempotencyKey, MerchantUserId, OrderId, PaymentId, SessionId},
    model::{CardBrand, CardExpiry, Presentation},
    money::Money,
    person::Phone,
    stored_enum, table_row,
    vault::{Purpose, Sealed, Vault},
};

use crate::domain::feed::EventOutcome;
use crate::domain::model::{
    CardOnFile, OpenSession, Order, OrderStatus, SessionEnd, ShopperPage, User,
};

stored_enum!(pub order_status: OrderStatus, "orders.status", {
    PendingPayment => "PENDING_PAYMENT",
    AwaitingShopper => "AWAITING_SHOPPER",
    Paid => "PAID",
    Declined => "DECLINED",
    Cancelled => "CANCELLED",
});
stored_enum!(pub event_outcome: EventOutcome, "applied_events.outcome", {
    Applied => "APPLIED",
    Stale => "STALE",
});
stored_enum!(pub presentation: Presentation, "orders.presentation", {
    Redirect => "PRESENTATION_REDIRECT",
    Embedded => "PRESENTATION_EMBEDDED",
    Popup => "PRESENTATION_POPUP",
});
stored_enum!(pub session_end: SessionEnd, "bind_sessions.outcome", {
    Completed => "COMPLETED",
    Failed => "FAILED",
    Expired => "EXPIRED",
});
stored_enum!(pub card_brand: CardBrand, "users.card_brand", {
    Visa => "VISA",
    Mastercard => "MASTERCARD",
    UnionPay => "UNIONPAY",
    Amex => "AMEX",
    Jcb => "JCB",
    Discover => "DISCOVER",
    Other => "OTHER",
});

/// A user's page presentation: the spelling of `orders.presentation`, read
/// from its own column.
pub fn page_presentation(stored: &str) -> StoreResult<Presentation> {
    presentation::from_stored(stored)
        .map_err(|_| paybind_shared::db::unknown_value("users.page_presentation", stored))
}

fn corrupt(what: String) -> StoreError {
    StoreError::Corrupt(what)
}

/// A user's binding token as stored: sealed to that user.
pub fn seal_token(
    vault: &Vault,
    user_id: &MerchantUserId,
    token: &BindingToken,
) -> StoreResult<String> {
    vault
        .seal_for(
            Purpose::BindingToken,
            user_id.as_str(),
            token.expose().as_bytes(),
        )
        .map(|sealed| sealed.to_text())
        .map_err(|e| StoreError::Corrupt(format!("sealing a token: {e}")))
}

fn open_token(vault: &Vault, user_id: &str, stored: &str) -> StoreResult<BindingToken> {
    let unreadable = |e: anyhow::Error| corrupt(format!("users.binding_token of {user_id}: {e}"));
    let sealed = Sealed::from_text(stored).map_err(unreadable)?;
    let plain = vault
        .open_for(Purpose::BindingToken, user_id, &sealed)
        .map_err(unreadable)?;
    let text = String::from_utf8(plain.to_vec())
        .map_err(|_| corrupt(format!("users.binding_token of {user_id}: not UTF-8")))?;
    Ok(BindingToken::from_trusted(text))
}

/// A token stored in plain text (before tokens were sealed): it starts
/// with the token prefix, which no sealed value (`KEY_ID:…`) does.
pub fn is_plain_token(stored: &str) -> bool {
    stored.starts_with("pbt_")
}

table_row!(
    /// A user, with the active binding (if any) in its card columns; the
    /// token is sealed (`KEY_ID:BASE64`, AES-256-GCM bound to the user).
    UserRow {
        id: String,
        display_name: String,
        phone: Option<String>,
        created_ms: i64,
        binding_id: Option<String>,
        binding_token: Option<String>,
        card_brand: Option<String>,
        card_last4: Option<String>,
        exp_month: Option<i64>,
        exp_year: Option<i64>,
        bound_ms: Option<i64>,
        page_presentation: String,
    }
);

impl UserRow {
    pub fn from_user(u: &User, vault: &Vault) -> StoreResult<Self> {
        let card = u.card.as_ref();
        let binding_token = card
            .map(|c| seal_token(vault, &u.id, &c.token))
            .transpose()?;
        Ok(Self {
            id: u.id.as_str().to_owned(),
            display_name: u.display_name.clone(),
            phone: u.phone.as_ref().map(|p| p.e164().to_owned()),
            created_ms: u.created_ms,
            binding_id: card.map(|c| c.binding_id.as_str().to_owned()),
            binding_token,
            card_brand: card.map(|c| card_brand::to_stored(c.brand).to_owned()),
            card_last4: card.map(|c| c.last4.clone()),
            exp_month: card.map(|c| i64::from(c.expiry.month)),
            exp_year: card.map(|c| i64::from(c.expiry.year)),
            bound_ms: card.map(|c| c.bound_ms),
            page_presentation: presentation::to_stored(u.presentation).to_owned(),
        })
    }

    pub fn into_user(self, vault: &Vault) -> StoreResult<User> {
        let id = self.id.clone();
        let card = match (self.binding_id, self.binding_token) {
            (Some(binding_id), Some(token)) => {
                let missing = |c: &str| corrupt(format!("users.{c} is missing for {id}"));
                let (month, year) = (
                    self.exp_month.ok_or_else(|| missing("exp_month"))?,
                    self.exp_year.ok_or_else(|| missing("exp_year"))?,
                );
                let expiry = match (u8::try_from(month), u16::try_from(year)) {
                    (Ok(month), Ok(year)) => CardExpiry { month, year },
                    _ => return Err(corrupt(format!("users.exp_month of {id}: {month}/{year}"))),
                };
                Some(CardOnFile {
                    binding_id: BindingId::from_stored(binding_id),
                    token: open_token(vault, &id, &token)?,
                    brand: card_brand::from_stored(
                        self.card_brand
                            .as_deref()
                            .ok_or_else(|| missing("card_brand"))?,
                    )?,
                    last4: self.card_last4.unwrap_or_default(),
                    expiry,
                    bound_ms: self.bound_ms.unwrap_or(self.created_ms),
                })
            }
            _ => None,
        };
        Ok(User {
            // Phones are parsed when written; one written before that rule
            // (and not a mobile number) is not offered for prefill.
            phone: self.phone.as_deref().and_then(|p| Phone::parse(p).ok()),
            presentation: page_presentation(&self.page_presentation)?,
            id: MerchantUserId::from_stored(self.id),
            display_name: self.display_name,
            created_ms: self.created_ms,
            card,
        })
    }
}

table_row!(
    OrderRow {
        id: String,
        user_id: String,
        amount_minor: i64,
        currency: String,
        description: String,
        status: String,
        decline_reason: Option<String>,
        payment_id: Option<String>,
        refunded_minor: i64,
        session_id: Option<String>,
        page_url: Option<String>,
        paid_with_card_on_file: bool,
        presentation: String,
        return_url: String,
        idempotency_key: String,
        request_hash: String,
        created_ms: i64,
        updated_ms: i64,
    }
);

impl OrderRow {
    pub fn from_order(o: &Order) -> Self {
        Self {
            id: o.id.as_str().to_owned(),
            user_id: o.user_id.as_str().to_owned(),
            amount_minor: o.amount.amount_minor(),
            currency: o.amount.currency().code().to_owned(),
            description: o.description.clone(),
            status: order_status::to_stored(o.status).to_owned(),
            decline_reason: o.decline_reason.clone(),
            payment_id: o.payment_id.as_ref().map(|p| p.as_str().to_owned()),
            refunded_minor: o.refunded_minor,
            session_id: o.page.as_ref().map(|p| p.session_id.as_str().to_owned()),
            page_url: o.page.as_ref().map(|p| p.page_url.clone()),
            paid_with_card_on_file: o.paid_with_card_on_file,
            presentation: presentation::to_stored(o.presentation).to_owned(),
            return_url: o.return_url.clone(),
            idempotency_key: o.idempotency_key.as_str().to_owned(),
            request_hash: o.request_hash.clone(),
            created_ms: o.created_ms,
            updated_ms: o.updated_ms,
        }
    }

    pub fn into_order(self) -> StoreResult<Order> {
        let amount = Money::parse(self.amount_minor, &self.currency)
            .map_err(|e| corrupt(format!("orders.amount_minor of {}: {e}", self.id)))?;
        let page = match (self.session_id, self.page_url) {
            (Some(session_id), Some(page_url)) => Some(ShopperPage {
                session_id: SessionId::from_stored(session_id),
                page_url,
            }),
            _ => None,
        };
        Ok(Order {
            status: order_status::from_stored(&self.status)?,
            presentation: presentation::from_stored(&self.presentation)?,
            id: OrderId::from_stored(self.id),
            user_id: MerchantUserId::from_stored(self.user_id),
            amount,
            description: self.description,
            decline_reason: self.decline_reason,
            payment_id: self.payment_id.map(PaymentId::from_stored),
            refunded_minor: self.refunded_minor,
            page,
            paid_with_card_on_file: self.paid_with_card_on_file,
            return_url: self.return_url,
            idempotency_key: IdempotencyKey::from_stored(self.idempotency_key),
            request_hash: self.request_hash,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
        })
    }
}

pub fn orders(rows: Vec<OrderRow>) -> StoreResult<Vec<Order>> {
    rows.into_iter().map(OrderRow::into_order).collect()
}

table_row!(
    /// A bind session whose outcome the shop has not applied yet.
    OpenSessionRow {
        id: String,
        user_id: String,
        created_ms: i64,
    }
);

impl OpenSessionRow {
    pub fn into_session(self) -> OpenSession {
        OpenSession {
            id: SessionId::from_stored(self.id),
            user_id: MerchantUserId::from_stored(self.user_id),
            created_ms: self.created_ms,
        }
    }
}

//! Wire ⇄ domain. Requests are destructured whole, so a new proto field does
//! not compile until it is handled here.
use paybind_proto::payment::v1 as pb;
use paybind_shared::money::{Money, MoneyError};

use crate::domain::{
    bindings::BindingView,
    card::CardBrand,
    clock::timestamp,
    error::{DomainError, DomainResult, Invalid},
    fields,
    payments::{PayInput, RefundInput},
    sessions::{NewSession, PaymentDetails, Presentation, SessionStatus, SessionView, KIND_BIND},
    shopper::{FullName, Phone},
};
use crate::store::{PaymentRow, RefundRow};

pub fn money(m: Option<&pb::Money>, field: &'static str) -> DomainResult<Money> {
    let m = m.ok_or_else(|| Invalid::new("INVALID_AMOUNT", "amount is required").at(field))?;
    Money::parse(m.amount_minor, &m.currency).map_err(|e| {
        let reason = match e {
            MoneyError::UnknownCurrency(_) => "UNKNOWN_CURRENCY",
            MoneyError::NotPositive | MoneyError::TooLarge => "INVALID_AMOUNT",
        };
        Invalid::new(reason, e.to_string()).at(field)
    })
}

fn presentation(value: i32) -> DomainResult<Presentation> {
    match pb::Presentation::try_from(value) {
        Ok(pb::Presentation::Redirect) => Ok(Presentation::Redirect),
        Ok(pb::Presentation::Embedded) => Ok(Presentation::Embedded),
        Ok(pb::Presentation::Popup) => Ok(Presentation::Popup),
        _ => Err(Invalid::new(
            "INVALID_ARGUMENT",
            "presentation must be REDIRECT, EMBEDDED or POPUP",
        )
        .at("presentation")),
    }
}

fn user_id(raw: &str) -> DomainResult<String> {
    fields::identifier(raw, "merchant_user_id").map_err(|e| e.at("merchant_user_id"))
}

fn key(raw: &str) -> DomainResult<String> {
    fields::idempotency_key(raw).map_err(|e| e.at("idempotency_key"))
}

fn prefill(p: Option<pb::ShopperPrefill>) -> DomainResult<(Option<FullName>, Option<Phone>)> {
    let Some(pb::ShopperPrefill { full_name, phone }) = p else {
        return Ok((None, None));
    };
    let name = match full_name.trim() {
        "" => None,
        n => Some(FullName::parse(n).map_err(|e| e.at("prefill.full_name"))?),
    };
    let phone = match phone.trim() {
        "" => None,
        p => Some(Phone::parse(p).map_err(|e| e.at("prefill.phone"))?),
    };
    Ok((name, phone))
}

impl TryFrom<pb::BindRequest> for NewSession {
    type Error = DomainError;

    fn try_from(r: pb::BindRequest) -> DomainResult<Self> {
        let pb::BindRequest {
            merchant_user_id,
            presentation: p,
            return_url,
            prefill: pre,
            idempotency_key,
        } = r;
        let (prefill_name, prefill_phone) = prefill(pre)?;
        Ok(Self {
            merchant_user_id: user_id(&merchant_user_id)?,
            presentation: presentation(p)?,
            return_url,
            prefill_name,
            prefill_phone,
            idempotency_key: key(&idempotency_key)?,
            payment: None,
        })
    }
}

impl TryFrom<pb::BindAndPayRequest> for NewSession {
    type Error = DomainError;

    fn try_from(r: pb::BindAndPayRequest) -> DomainResult<Self> {
        let pb::BindAndPayRequest {
            merchant_user_id,
            presentation: p,
            return_url,
            prefill: pre,
            payment,
            idempotency_key,
        } = r;
        let pb::PaymentDetails {
            merchant_order_id,
            amount,
            description,
        } = payment
            .ok_or_else(|| Invalid::new("INVALID_ARGUMENT", "payment is required").at("payment"))?;
        let (prefill_name, prefill_phone) = prefill(pre)?;
        Ok(Self {
            merchant_user_id: user_id(&merchant_user_id)?,
            presentation: presentation(p)?,
            return_url,
            prefill_name,
            prefill_phone,
            idempotency_key: key(&idempotency_key)?,
            payment: Some(PaymentDetails {
                order_id: fields::identifier(&merchant_order_id, "merchant_order_id")
                    .map_err(|e| e.at("payment.merchant_order_id"))?,
                amount: money(amount.as_ref(), "payment.amount")?,
                description: fields::free_text(&description, 200, "description")
                    .map_err(|e| e.at("payment.description"))?,
            }),
        })
    }
}

impl TryFrom<pb::PayRequest> for PayInput {
    type Error = DomainError;

    fn try_from(r: pb::PayRequest) -> DomainResult<Self> {
        let pb::PayRequest {
            binding_token,
            merchant_user_id,
            merchant_order_id,
            amount,
            description,
            idempotency_key,
        } = r;
        if binding_token.is_empty() {
            return Err(
                Invalid::new("INVALID_ARGUMENT", "binding_token is required").at("binding_token"),
            );
        }
        Ok(Self {
            token: binding_token,
            merchant_user_id: user_id(&merchant_user_id)?,
            order_id: fields::identifier(&merchant_order_id, "merchant_order_id")
                .map_err(|e| e.at("merchant_order_id"))?,
            amount: money(amount.as_ref(), "amount")?,
            description: fields::free_text(&description, 200, "description")
                .map_err(|e| e.at("description"))?,
            idempotency_key: key(&idempotency_key)?,
        })
    }
}

impl TryFrom<pb::RefundRequest> for RefundInput {
    type Error = DomainError;

    fn try_from(r: pb::RefundRequest) -> DomainResult<Self> {
        let pb::RefundRequest {
            payment_id,
            amount,
            reason,
            idempotency_key,
        } = r;
        Ok(Self {
            payment_id,
            amount: money(amount.as_ref(), "amount")?,
            reason: fields::free_text(&reason, 200, "reason").map_err(|e| e.at("reason"))?,
            idempotency_key: key(&idempotency_key)?,
        })
    }
}

fn pb_money(amount_minor: i64, currency: &str) -> pb::Money {
    pb::Money {
        amount_minor,
        currency: currency.to_owned(),
    }
}

fn brand(s: &str) -> pb::CardBrand {
    match CardBrand::from_str_lossy(s) {
        CardBrand::Visa => pb::CardBrand::Visa,
        CardBrand::Mastercard => pb::CardBrand::Mastercard,
        CardBrand::UnionPay => pb::CardBrand::Unionpay,
        CardBrand::Amex => pb::CardBrand::Amex,
        CardBrand::Jcb => pb::CardBrand::Jcb,
        CardBrand::Discover => pb::CardBrand::Discover,
        CardBrand::Other => pb::CardBrand::Other,
    }
}

pub fn binding(v: BindingView) -> pb::Binding {
    let b = v.row;
    pb::Binding {
        binding_id: b.id,
        binding_token: v.token,
        merchant_user_id: b.merchant_user_id,
        status: if b.status == "ACTIVE" {
            pb::BindingStatus::Active
        } else {
            pb::BindingStatus::Revoked
        } as i32,
        card: Some(pb::CardSummary {
            brand: brand(&b.card_brand) as i32,
            last4: b.card_last4,
            expiry_month: b.exp_month as i32,
            expiry_year: b.exp_year as i32,
        }),
        limits: Some(pb::AuthFreeLimits {
            per_payment: Some(pb_money(b.per_payment_limit, &b.currency)),
            per_day: Some(pb_money(b.daily_limit, &b.currency)),
            remaining_today: Some(pb_money(v.remaining_today, &b.currency)),
        }),
        create_time: Some(timestamp(b.created_ms)),
        revoke_time: b.revoked_ms.map(timestamp),
        revoke_reason: b.revoke_reason.unwrap_or_default(),
    }
}

pub fn payment(p: PaymentRow) -> pb::Payment {
    let status = match p.status.as_str() {
        "SUCCEEDED" => pb::PaymentStatus::Succeeded,
        "DECLINED" => pb::PaymentStatus::Declined,
        _ => pb::PaymentStatus::Pending,
    };
    pb::Payment {
        payment_id: p.id,
        merchant_order_id: p.order_id,
        merchant_user_id: p.merchant_user_id,
        binding_id: p.binding_id.unwrap_or_default(),
        amount: Some(pb_money(p.amount_minor, &p.currency)),
        refunded: Some(pb_money(p.refunded_minor, &p.currency)),
        status: status as i32,
        decline_reason: p.decline_reason.unwrap_or_default(),
        description: p.description,
        shopper_authenticated: p.shopper_authenticated,
        create_time: Some(timestamp(p.created_ms)),
    }
}

pub fn refund(r: RefundRow) -> pb::Refund {
    let status = match r.status.as_str() {
        "SUCCEEDED" => pb::RefundStatus::Succeeded,
        "FAILED" => pb::RefundStatus::Failed,
        _ => pb::RefundStatus::Pending,
    };
    pb::Refund {
        refund_id: r.id,
        payment_id: r.payment_id,
        amount: Some(pb_money(r.amount_minor, &r.currency)),
        status: status as i32,
        reason: r.reason,
        create_time: Some(timestamp(r.created_ms)),
    }
}

pub fn session(v: SessionView) -> pb::BindSession {
    let code_sent_to = v.code_sent_to().unwrap_or_default();
    let s = v.row;
    let status = match v.status {
        SessionStatus::Open => pb::BindSessionStatus::Open,
        SessionStatus::AwaitingVerification => pb::BindSessionStatus::AwaitingVerification,
        SessionStatus::Completed => pb::BindSessionStatus::Completed,
        SessionStatus::Failed => pb::BindSessionStatus::Failed,
        SessionStatus::Expired => pb::BindSessionStatus::Expired,
    };
    let presentation = match s.presentation.as_str() {
        "REDIRECT" => pb::Presentation::Redirect,
        "EMBEDDED" => pb::Presentation::Embedded,
        _ => pb::Presentation::Popup,
    };
    let payment_details = match (&s.order_id, s.amount_minor, &s.currency) {
        (Some(order), Some(amount), Some(currency)) => Some(pb::PaymentDetails {
            merchant_order_id: order.clone(),
            amount: Some(pb_money(amount, currency)),
            description: s.description.clone().unwrap_or_default(),
        }),
        _ => None,
    };
    let awaiting = status == pb::BindSessionStatus::AwaitingVerification;
    pb::BindSession {
        session_id: s.id,
        kind: if s.kind == KIND_BIND {
            pb::BindSessionKind::Bind
        } else {
            pb::BindSessionKind::BindAndPay
        } as i32,
        status: status as i32,
        merchant_user_id: s.merchant_user_id,
        presentation: presentation as i32,
        return_url: s.return_url,
        binding_page_url: v.page_url,
        create_time: Some(timestamp(s.created_ms)),
        expire_time: Some(timestamp(s.expires_ms)),
        attempts_left: s.attempts_left.max(0) as i32,
        code_sent_to,
        code_expire_time: if awaiting {
            s.otp_expires_ms.map(timestamp)
        } else {
            None
        },
        last_error_reason: s.last_error.unwrap_or_default(),
        payment_details,
        binding: v.binding.map(binding),
        payment: v.payment.map(payment),
    }
}

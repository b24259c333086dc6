//! Wire ⇄ domain, and nothing else. Requests are destructured whole, so a
//! new proto field does not compile until it is handled here, and every
//! field is parsed before any is refused, so a client learns all it must
//! fix at once.
use paybind_proto::payment::v1 as pb;
use paybind_shared::{
    fields::{free_text, page_size, AllOk, At, Invalid, PageCursor, Rejected},
    ids::{BindingToken, IdempotencyKey, MerchantUserId, OrderId, PaymentId},
    model::Presentation,
    person::{FullName, Phone},
    wire::{
        amount_to_wire, binding_status_to_wire, card_brand_to_wire, money_from_wire, money_to_wire,
        payment_status_to_wire, presentation_from_wire, presentation_to_wire,
        refund_status_to_wire, session_status_to_wire, timestamp,
    },
};

use crate::domain::{
    bindings::{BindingListing, BindingView},
    deliveries::{AttemptOutcome, Delivery, DeliveryState, DeliveryStatus},
    events::{BindingSnapshot, Event, EventState, EventType, RevokedBy, SessionSnapshot},
    model::{AttemptError, Payment, PaymentState, Refund, SessionKind, SessionState},
    payments::{PayInput, RefundInput},
    sessions::{NewSession, PaymentDetails, SessionView},
};

/// Free text fields of requests: descriptions and reasons.
const TEXT_MAX: usize = 200;

/// Payment-svc requires a presentation: unset is refused like an unknown one.
fn presentation(value: i32) -> Result<Presentation, Rejected> {
    presentation_from_wire(value)
        .and_then(|p| {
            p.ok_or_else(|| {
                Invalid::argument("presentation is required: REDIRECT, EMBEDDED or POPUP")
            })
        })
        .at("presentation")
}

fn prefill(p: Option<pb::ShopperPrefill>) -> Result<(Option<FullName>, Option<Phone>), Rejected> {
    let Some(pb::ShopperPrefill { full_name, phone }) = p else {
        return Ok((None, None));
    };
    let name = match full_name.trim() {
        "" => Ok(None),
        n => FullName::parse(n).map(Some).at("prefill.full_name"),
    };
    let phone = match phone.trim() {
        "" => Ok(None),
        p => Phone::parse(p).map(Some).at("prefill.phone"),
    };
    (name, phone).all_ok()
}

impl TryFrom<pb::BindRequest> for NewSession {
    type Error = Rejected;

    fn try_from(r: pb::BindRequest) -> Result<Self, Rejected> {
        let pb::BindRequest {
            merchant_user_id,
            presentation: p,
            return_url,
            prefill: pre,
            idempotency_key,
        } = r;
        let (merchant_user_id, presentation, (prefill_name, prefill_phone), idempotency_key) = (
            MerchantUserId::parse(&merchant_user_id).at("merchant_user_id"),
            presentation(p),
            prefill(pre),
            IdempotencyKey::parse(&idempotency_key).at("idempotency_key"),
        )
            .all_ok()?;
        Ok(Self {
            merchant_user_id,
            presentation,
            return_url,
            prefill_name,
            prefill_phone,
            idempotency_key,
            payment: None,
        })
    }
}

fn payment_details(payment: Option<pb::PaymentDetails>) -> Result<PaymentDetails, Rejected> {
    let pb::PaymentDetails {
        merchant_order_id,
        amount,
        description,
    } = payment.ok_or_else(|| Invalid::argument("payment is required").at("payment"))?;
    let (order_id, amount, description) = (
        OrderId::parse(&merchant_order_id).at("payment.merchant_order_id"),
        money_from_wire(amount.as_ref()).at("payment.amount"),
        free_text(&description, TEXT_MAX, "description").at("payment.description"),
    )
        .all_ok()?;
    Ok(PaymentDetails {
        order_id,
        amount,
        description,
    })
}

impl TryFrom<pb::BindAndPayRequest> for NewSession {
    type Error = Rejected;

    fn try_from(r: pb::BindAndPayRequest) -> Result<Self, Rejected> {
        let pb::BindAndPayRequest {
            merchant_user_id,
            presentation: p,
            return_url,
            prefill: pre,
            payment,
            idempotency_key,
        } = r;
        let (merchant_user_id, presentation, (prefill_name, prefill_phone), payment, key) = (
            MerchantUserId::parse(&merchant_user_id).at("merchant_user_id"),
            presentation(p),
            prefill(pre),
            payment_details(payment),
            IdempotencyKey::parse(&idempotency_key).at("idempotency_key"),
        )
            .all_ok()?;
        Ok(Self {
            merchant_user_id,
            presentation,
            return_url,
            prefill_name,
            prefill_phone,
            idempotency_key: key,
            payment: Some(payment),
        })
    }
}

impl TryFrom<pb::PayRequest> for PayInput {
    type Error = Rejected;

    fn try_from(r: pb::PayRequest) -> Result<Self, Rejected> {
        let pb::PayRequest {
            binding_token,
            merchant_user_id,
            merchant_order_id,
            amount,
            description,
            idempotency_key,
        } = r;
        let (token, merchant_user_id, order_id, amount, description, idempotency_key) = (
            BindingToken::parse(&binding_token).at("binding_token"),
            MerchantUserId::parse(&merchant_user_id).at("merchant_user_id"),
            OrderId::parse(&merchant_order_id).at("merchant_order_id"),
            money_from_wire(amount.as_ref()).at("amount"),
            free_text(&description, TEXT_MAX, "description").at("description"),
            IdempotencyKey::parse(&idempotency_key).at("idempotency_key"),
        )
            .all_ok()?;
        Ok(Self {
            token,
            merchant_user_id,
            order_id,
            amount,
            description,
            idempotency_key,
        })
    }
}

/// A payment id from a request: one that cannot be an id is simply not
/// found (the caller learns nothing more).
pub fn payment_id(raw: &str) -> Option<PaymentId> {
    PaymentId::parse(raw).ok()
}

impl TryFrom<pb::RefundRequest> for RefundInput {
    type Error = Rejected;

    fn try_from(r: pb::RefundRequest) -> Result<Self, Rejected> {
        let pb::RefundRequest {
            payment_id,
            amount,
            reason,
            idempotency_key,
        } = r;
        let (payment_id, amount, reason, idempotency_key) = (
            PaymentId::parse(&payment_id).at("payment_id"),
            money_from_wire(amount.as_ref()).at("amount"),
            free_text(&reason, TEXT_MAX, "reason").at("reason"),
            IdempotencyKey::parse(&idempotency_key).at("idempotency_key"),
        )
            .all_ok()?;
        Ok(Self {
            payment_id,
            amount,
            reason,
            idempotency_key,
        })
    }
}

/// An Unbind request, parsed: the token, its user, and the reason (may be
/// empty).
pub fn unbind(r: pb::UnbindRequest) -> Result<(BindingToken, MerchantUserId, String), Rejected> {
    let pb::UnbindRequest {
        binding_token,
        merchant_user_id,
        reason,
    } = r;
    (
        BindingToken::parse(&binding_token).at("binding_token"),
        MerchantUserId::parse(&merchant_user_id).at("merchant_user_id"),
        free_text(&reason, TEXT_MAX, "reason").at("reason"),
    )
        .all_ok()
}

impl TryFrom<pb::ListBindingsRequest> for BindingListing {
    type Error = Rejected;

    fn try_from(r: pb::ListBindingsRequest) -> Result<Self, Rejected> {
        let pb::ListBindingsRequest {
            merchant_user_id,
            page_size: size,
            page_token,
            include_revoked,
        } = r;
        let (merchant_user_id, page_size, after) = (
            MerchantUserId::parse(&merchant_user_id).at("merchant_user_id"),
            page_size(size).at("page_size"),
            PageCursor::decode(&page_token).at("page_token"),
        )
            .all_ok()?;
        Ok(Self {
            merchant_user_id,
            page_size,
            after,
            include_revoked,
        })
    }
}

pub fn binding(v: BindingView) -> pb::Binding {
    let BindingView {
        binding,
        token,
        remaining_today,
    } = v;
    let currency = binding.limits.currency();
    let mut wire = binding_snapshot(BindingSnapshot::of(&binding));
    wire.binding_token = token.expose().to_owned();
    if let Some(limits) = &mut wire.limits {
        limits.remaining_today = Some(amount_to_wire(remaining_today, currency));
    }
    wire
}

/// A binding as the feed shows it: no token, no "remaining today" (a
/// figure of the moment, not of the change).
fn binding_snapshot(b: BindingSnapshot) -> pb::Binding {
    let BindingSnapshot {
        id,
        merchant_user_id,
        status,
        card,
        limits,
        created_ms,
        revoked,
    } = b;
    let expired = revoked.as_ref().is_some_and(|r| r.by == RevokedBy::Expiry);
    let status = if expired {
        pb::BindingStatus::Expired
    } else {
        binding_status_to_wire(status)
    };
    let (revoke_time, revoke_reason, revoked_by) = match revoked {
        Some(r) => (Some(timestamp(r.at_ms)), r.reason, revoked_by_to_wire(r.by)),
        None => (None, String::new(), pb::RevokedBy::Unspecified),
    };
    pb::Binding {
        binding_id: id.into_string(),
        binding_token: String::new(),
        merchant_user_id: merchant_user_id.into_string(),
        status: status as i32,
        card: Some(pb::CardSummary {
            brand: card_brand_to_wire(card.brand) as i32,
            last4: card.last4,
            expiry_month: i32::from(card.expiry.month),
            expiry_year: i32::from(card.expiry.year),
        }),
        limits: Some(pb::AuthFreeLimits {
            per_payment: Some(money_to_wire(limits.per_payment)),
            per_day: Some(money_to_wire(limits.daily)),
            remaining_today: None,
        }),
        create_time: Some(timestamp(created_ms)),
        revoke_time,
        revoke_reason,
        revoked_by: revoked_by as i32,
    }
}

fn revoked_by_to_wire(by: RevokedBy) -> pb::RevokedBy {
    match by {
        RevokedBy::Merchant => pb::RevokedBy::Merchant,
        RevokedBy::Shopper => pb::RevokedBy::Shopper,
        RevokedBy::Expiry => pb::RevokedBy::Expiry,
        RevokedBy::Operator => pb::RevokedBy::Operator,
    }
}

fn event_type_to_wire(t: EventType) -> pb::EventType {
    match t {
        EventType::BindingCreated => pb::EventType::BindingCreated,
        EventType::BindingUpdated => pb::EventType::BindingUpdated,
        EventType::BindingRevoked => pb::EventType::BindingRevoked,
        EventType::PaymentSucceeded => pb::EventType::PaymentSucceeded,
        EventType::PaymentDeclined => pb::EventType::PaymentDeclined,
        EventType::RefundSucceeded => pb::EventType::RefundSucceeded,
        EventType::BindSessionCompleted => pb::EventType::BindSessionCompleted,
        EventType::BindSessionFailed => pb::EventType::BindSessionFailed,
        EventType::BindSessionExpired => pb::EventType::BindSessionExpired,
    }
}

/// A cursor as merchants see it: opaque text (today the sequence number).
pub fn cursor_to_wire(seq: i64) -> String {
    seq.to_string()
}

/// A cursor from a request: empty is the beginning of the feed.
pub fn cursor(raw: &str) -> Result<i64, Invalid> {
    if raw.is_empty() {
        return Ok(0);
    }
    raw.parse::<i64>()
        .ok()
        .filter(|seq| *seq >= 0)
        .ok_or_else(|| Invalid::argument("not a cursor this feed gave out"))
}

/// A ListEvents request: the cursor and the page size.
pub fn list_events(r: pb::ListEventsRequest) -> Result<(i64, i64), Rejected> {
    let pb::ListEventsRequest {
        after_cursor,
        page_size: size,
    } = r;
    (
        cursor(&after_cursor).at("after_cursor"),
        page_size(size).at("page_size"),
    )
        .all_ok()
}

/// A ListDeliveries request: the state wanted (none: all), the cursor and
/// the page size.
pub fn list_deliveries(
    r: pb::ListDeliveriesRequest,
) -> Result<(Option<DeliveryState>, i64, i64), Rejected> {
    let pb::ListDeliveriesRequest {
        status,
        after_cursor,
        page_size: size,
    } = r;
    let state = match pb::DeliveryStatus::try_from(status) {
        Ok(pb::DeliveryStatus::Unspecified) => Ok(None),
        Ok(pb::DeliveryStatus::Pending) => Ok(Some(DeliveryState::Pending)),
        Ok(pb::DeliveryStatus::Delivered) => Ok(Some(DeliveryState::Delivered)),
        Ok(pb::DeliveryStatus::Failed) => Ok(Some(DeliveryState::Failed)),
        Err(_) => Err(Invalid::argument("not a DeliveryStatus")),
    };
    (
        state.at("status"),
        cursor(&after_cursor).at("after_cursor"),
        page_size(size).at("page_size"),
    )
        .all_ok()
}

pub fn delivery(d: Delivery) -> pb::Delivery {
    let (status, next_attempt_time) = match d.status {
        DeliveryStatus::Pending { next_attempt_ms } => (
            pb::DeliveryStatus::Pending,
            Some(timestamp(next_attempt_ms)),
        ),
        DeliveryStatus::Delivered { .. } => (pb::DeliveryStatus::Delivered, None),
        DeliveryStatus::Failed { .. } => (pb::DeliveryStatus::Failed, None),
    };
    pb::Delivery {
        event_id: d.event_id,
        cursor: cursor_to_wire(d.seq),
        status: status as i32,
        attempts: d
            .attempts
            .into_iter()
            .map(|a| pb::DeliveryAttempt {
                attempt: i32::try_from(a.attempt).unwrap_or(i32::MAX),
                start_time: Some(timestamp(a.started_ms)),
                outcome: attempt_outcome_to_wire(a.outcome) as i32,
                latency_ms: a.latency_ms,
                detail: a.detail,
            })
            .collect(),
        next_attempt_time,
    }
}

fn attempt_outcome_to_wire(o: AttemptOutcome) -> pb::AttemptOutcome {
    match o {
        AttemptOutcome::Acknowledged => pb::AttemptOutcome::Acknowledged,
        AttemptOutcome::Refused => pb::AttemptOutcome::Refused,
        AttemptOutcome::Unreachable => pb::AttemptOutcome::Unreachable,
        AttemptOutcome::TimedOut => pb::AttemptOutcome::TimedOut,
        AttemptOutcome::NoEndpoint => pb::AttemptOutcome::NoEndpoint,
        AttemptOutcome::Abandoned => pb::AttemptOutcome::Abandoned,
    }
}

pub fn event(e: Event) -> pb::Event {
    let Event {
        id,
        seq,
        event_type,
        version,
        occurred_ms,
        state,
    } = e;
    let resource_id = state.resource_id().to_owned();
    let resource = match state {
        EventState::Binding(b) => pb::event::Resource::Binding(binding_snapshot(b)),
        EventState::Payment(p) => pb::event::Resource::Payment(payment(p)),
        EventState::Refund(r) => pb::event::Resource::Refund(refund(r)),
        EventState::Session(s) => pb::event::Resource::BindSession(session_snapshot(s)),
    };
    pb::Event {
        event_id: id.into_string(),
        r#type: event_type_to_wire(event_type) as i32,
        cursor: cursor_to_wire(seq),
        resource_id,
        resource_version: version,
        occur_time: Some(timestamp(occurred_ms)),
        resource: Some(resource),
    }
}

fn session_snapshot(s: SessionSnapshot) -> pb::BindSession {
    let SessionSnapshot {
        id,
        merchant_user_id,
        status,
        order_id,
        binding_id,
        payment_id,
    } = s;
    let kind = if order_id.is_some() {
        pb::BindSessionKind::BindAndPay
    } else {
        pb::BindSessionKind::Bind
    };
    pb::BindSession {
        session_id: id.into_string(),
        kind: kind as i32,
        status: session_status_to_wire(status) as i32,
        merchant_user_id: merchant_user_id.into_string(),
        payment_details: order_id.map(|o| pb::PaymentDetails {
            merchant_order_id: o.into_string(),
            ..Default::default()
        }),
        binding: binding_id.map(|b| pb::Binding {
            binding_id: b.into_string(),
            ..Default::default()
        }),
        payment: payment_id.map(|p| pb::Payment {
            payment_id: p.into_string(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn payment(p: Payment) -> pb::Payment {
    let status = payment_status_to_wire(p.status());
    let decline_reason = match &p.state {
        PaymentState::Declined { reason } => reason.as_str().to_owned(),
        _ => String::new(),
    };
    pb::Payment {
        payment_id: p.id.into_string(),
        merchant_order_id: p.order_id.into_string(),
        merchant_user_id: p.merchant_user_id.into_string(),
        binding_id: p.binding_id.map(|b| b.into_string()).unwrap_or_default(),
        refunded: Some(amount_to_wire(p.refunded_minor, p.amount.currency())),
        amount: Some(money_to_wire(p.amount)),
        status: status as i32,
        decline_reason,
        description: p.description,
        shopper_authenticated: p.shopper_authenticated,
        create_time: Some(timestamp(p.created_ms)),
    }
}

pub fn refund(r: Refund) -> pb::Refund {
    pb::Refund {
        refund_id: r.id.into_string(),
        payment_id: r.payment_id.into_string(),
        amount: Some(money_to_wire(r.amount)),
        status: refund_status_to_wire(r.status) as i32,
        reason: r.reason,
        create_time: Some(timestamp(r.created_ms)),
    }
}

/// The reason a session's last attempt failed, as `ErrorReason` names it.
fn attempt_error(e: AttemptError) -> &'static str {
    match e {
        AttemptError::CardNotVerified => "CARD_NOT_VERIFIED",
        AttemptError::CardDeclined => "CARD_DECLINED",
        AttemptError::WrongCode => "WRONG_CODE",
    }
}

pub fn session(v: SessionView) -> pb::BindSession {
    let code_sent_to = v.code_sent_to().unwrap_or_default();
    let status = session_status_to_wire(v.status);
    let s = v.session;
    let code_expire_time = match (&s.state, status) {
        (
            SessionState::AwaitingVerification { code, .. },
            pb::BindSessionStatus::AwaitingVerification,
        ) => Some(timestamp(code.expires_ms)),
        _ => None,
    };
    let kind = match s.kind() {
        SessionKind::Bind => pb::BindSessionKind::Bind,
        SessionKind::BindAndPay => pb::BindSessionKind::BindAndPay,
    };
    pb::BindSession {
        session_id: s.id.into_string(),
        kind: kind as i32,
        status: status as i32,
        merchant_user_id: s.merchant_user_id.into_string(),
        presentation: presentation_to_wire(s.presentation) as i32,
        return_url: s.return_url,
        binding_page_url: v.page_url,
        create_time: Some(timestamp(s.created_ms)),
        expire_time: Some(timestamp(s.expires_ms)),
        attempts_left: i32::try_from(s.attempts_left).unwrap_or(i32::MAX),
        code_sent_to,
        code_expire_time,
        last_error_reason: s
            .last_error
            .map(attempt_error)
            .unwrap_or_default()
            .to_owned(),
        payment_details: s.purchase.map(|p| pb::PaymentDetails {
            merchant_order_id: p.order_id.into_string(),
            amount: Some(money_to_wire(p.amount)),
            description: p.description,
        }),
        binding: v.binding.map(binding),
        payment: v.payment.map(payment),
    }
}

//! The contract's shared vocabulary on the wire: money, timestamps and the
//! enums of [`crate::model`], to and from `paybind.payment.v1`. Both
//! services' `grpc` modules (and merchant-svc's payment client) translate
//! through these, so each mapping exists once.
use paybind_proto::payment::v1 as pb;

use crate::{
    fields::Invalid,
    model::{BindingStatus, CardBrand, PaymentStatus, Presentation, RefundStatus, SessionStatus},
    money::{Currency, Money, MoneyError},
};

/// An amount from a request: required, positive, in a known currency.
pub fn money_from_wire(m: Option<&pb::Money>) -> Result<Money, Invalid> {
    let m = m.ok_or_else(|| Invalid::new("INVALID_AMOUNT", "amount is required"))?;
    Money::parse(m.amount_minor, &m.currency).map_err(|e| {
        let reason = match e {
            MoneyError::UnknownCurrency(_) => "UNKNOWN_CURRENCY",
            MoneyError::NotPositive | MoneyError::TooLarge => "INVALID_AMOUNT",
        };
        Invalid::new(reason, e.to_string())
    })
}

/// Any amount (zero included, e.g. what is refunded so far) on the wire.
pub fn amount_to_wire(amount_minor: i64, currency: Currency) -> pb::Money {
    pb::Money {
        amount_minor,
        currency: currency.code().to_owned(),
    }
}

pub fn money_to_wire(money: Money) -> pb::Money {
    amount_to_wire(money.amount_minor(), money.currency())
}

/// A protobuf timestamp from unix milliseconds.
pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// A presentation from a request: `None` when unset (each service decides
/// what unset means), refused when it is not one of the three.
pub fn presentation_from_wire(value: i32) -> Result<Option<Presentation>, Invalid> {
    match pb::Presentation::try_from(value) {
        Ok(pb::Presentation::Unspecified) => Ok(None),
        Ok(pb::Presentation::Redirect) => Ok(Some(Presentation::Redirect)),
        Ok(pb::Presentation::Embedded) => Ok(Some(Presentation::Embedded)),
        Ok(pb::Presentation::Popup) => Ok(Some(Presentation::Popup)),
        Err(_) => Err(Invalid::argument(
            "presentation must be REDIRECT, EMBEDDED or POPUP",
        )),
    }
}

pub fn presentation_to_wire(p: Presentation) -> pb::Presentation {
    match p {
        Presentation::Redirect => pb::Presentation::Redirect,
        Presentation::Embedded => pb::Presentation::Embedded,
        Presentation::Popup => pb::Presentation::Popup,
    }
}

pub fn card_brand_to_wire(b: CardBrand) -> pb::CardBrand {
    match b {
        CardBrand::Visa => pb::CardBrand::Visa,
        CardBrand::Mastercard => pb::CardBrand::Mastercard,
        CardBrand::UnionPay => pb::CardBrand::Unionpay,
        CardBrand::Amex => pb::CardBrand::Amex,
        CardBrand::Jcb => pb::CardBrand::Jcb,
        CardBrand::Discover => pb::CardBrand::Discover,
        CardBrand::Other => pb::CardBrand::Other,
    }
}

/// What a peer sent as a card brand; `None` for a value this build does not
/// know (a newer peer).
pub fn card_brand_from_wire(value: i32) -> Option<CardBrand> {
    match pb::CardBrand::try_from(value).ok()? {
        pb::CardBrand::Unspecified => None,
        pb::CardBrand::Visa => Some(CardBrand::Visa),
        pb::CardBrand::Mastercard => Some(CardBrand::Mastercard),
        pb::CardBrand::Unionpay => Some(CardBrand::UnionPay),
        pb::CardBrand::Amex => Some(CardBrand::Amex),
        pb::CardBrand::Jcb => Some(CardBrand::Jcb),
        pb::CardBrand::Discover => Some(CardBrand::Discover),
        pb::CardBrand::Other => Some(CardBrand::Other),
    }
}

pub fn session_status_to_wire(s: SessionStatus) -> pb::BindSessionStatus {
    match s {
        SessionStatus::Open => pb::BindSessionStatus::Open,
        SessionStatus::AwaitingVerification => pb::BindSessionStatus::AwaitingVerification,
        SessionStatus::Completed => pb::BindSessionStatus::Completed,
        SessionStatus::Failed => pb::BindSessionStatus::Failed,
        SessionStatus::Expired => pb::BindSessionStatus::Expired,
    }
}

pub fn session_status_from_wire(value: i32) -> Option<SessionStatus> {
    match pb::BindSessionStatus::try_from(value).ok()? {
        pb::BindSessionStatus::Unspecified => None,
        pb::BindSessionStatus::Open => Some(SessionStatus::Open),
        pb::BindSessionStatus::AwaitingVerification => Some(SessionStatus::AwaitingVerification),
        pb::BindSessionStatus::Completed => Some(SessionStatus::Completed),
        pb::BindSessionStatus::Failed => Some(SessionStatus::Failed),
        pb::BindSessionStatus::Expired => Some(SessionStatus::Expired),
    }
}

pub fn payment_status_to_wire(s: PaymentStatus) -> pb::PaymentStatus {
    match s {
        PaymentStatus::Pending => pb::PaymentStatus::Pending,
        PaymentStatus::Succeeded => pb::PaymentStatus::Succeeded,
        PaymentStatus::Declined => pb::PaymentStatus::Declined,
    }
}

pub fn payment_status_from_wire(value: i32) -> Option<PaymentStatus> {
    match pb::PaymentStatus::try_from(value).ok()? {
        pb::PaymentStatus::Unspecified => None,
        pb::PaymentStatus::Pending => Some(PaymentStatus::Pending),
        pb::PaymentStatus::Succeeded => Some(PaymentStatus::Succeeded),
        pb::PaymentStatus::Declined => Some(PaymentStatus::Declined),
    }
}

pub fn refund_status_to_wire(s: RefundStatus) -> pb::RefundStatus {
    match s {
        RefundStatus::Pending => pb::RefundStatus::Pending,
        RefundStatus::Succeeded => pb::RefundStatus::Succeeded,
        RefundStatus::Failed => pb::RefundStatus::Failed,
    }
}

pub fn binding_status_to_wire(s: BindingStatus) -> pb::BindingStatus {
    match s {
        BindingStatus::Active => pb::BindingStatus::Active,
        BindingStatus::Revoked => pb::BindingStatus::Revoked,
    }
}

pub fn binding_status_from_wire(value: i32) -> Option<BindingStatus> {
    match pb::BindingStatus::try_from(value).ok()? {
        pb::BindingStatus::Unspecified => None,
        pb::BindingStatus::Active => Some(BindingStatus::Active),
        // An expired binding is a revoked one to its merchant: it pays no more.
        pb::BindingStatus::Revoked | pb::BindingStatus::Expired => Some(BindingStatus::Revoked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_split_millis() {
        let t = timestamp(1_500);
        assert_eq!((t.seconds, t.nanos), (1, 500_000_000));
        let t = timestamp(-1);
        assert_eq!((t.seconds, t.nanos), (-1, 999_000_000));
    }

    #[test]
    fn money_reasons() {
        let m = |a, c: &str| {
            money_from_wire(Some(&pb::Money {
                amount_minor: a,
                currency: c.into(),
            }))
        };
        assert_eq!(m(100, "CNY").expect("ok").amount_minor(), 100);
        assert_eq!(m(0, "CNY").expect_err("zero").reason, "INVALID_AMOUNT");
        assert_eq!(m(1, "cny").expect_err("case").reason, "UNKNOWN_CURRENCY");
        assert_eq!(
            money_from_wire(None).expect_err("none").reason,
            "INVALID_AMOUNT"
        );
    }

    #[test]
    fn presentations() {
        assert_eq!(presentation_from_wire(0), Ok(None));
        assert_eq!(presentation_from_wire(3), Ok(Some(Presentation::Popup)));
        assert!(presentation_from_wire(99).is_err());
        assert!(presentation_from_wire(-1).is_err());
    }

    #[test]
    fn every_brand_round_trips() {
        for b in [
            CardBrand::Visa,
            CardBrand::Mastercard,
            CardBrand::UnionPay,
            CardBrand::Amex,
            CardBrand::Jcb,
            CardBrand::Discover,
            CardBrand::Other,
        ] {
            assert_eq!(card_brand_from_wire(card_brand_to_wire(b) as i32), Some(b));
        }
    }
}

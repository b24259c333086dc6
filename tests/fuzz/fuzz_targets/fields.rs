//! Every parser of a request's plain fields, fed the same bytes: none may
//! panic, and what one accepts must be what it promises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paybind_shared::{
    clock::LocalDate,
    fields::{free_text, page_size, required_text, PageCursor},
    ids::{BindingToken, IdempotencyKey, MerchantUserId, OrderId, PaymentId, SessionId},
    money::{Currency, Money, MAX_AMOUNT_MINOR},
    person::{FullName, Phone},
};
use payment_svc::domain::{
    card::{luhn_valid, parse_expiry, CardBrand, CardNumber, Cvv},
    shopper::IdNumber,
};

const TODAY: LocalDate = LocalDate {
    year: 2026,
    month: 11,
    day: 26,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let numbers: Vec<i64> = data
        .chunks(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            i64::from_le_bytes(b)
        })
        .collect();
    let number = |i: usize| numbers.get(i).copied().unwrap_or(0);

    if let Ok(card) = CardNumber::parse(&text) {
        let digits = card.expose_digits();
        assert!((12..=19).contains(&digits.len()));
        assert!(digits.bytes().all(|b| b.is_ascii_digit()));
        assert!(luhn_valid(digits));
        assert_eq!(card.last4(), &digits[digits.len() - 4..]);
    }
    for brand in [None, Some(CardBrand::Visa), Some(CardBrand::Amex)] {
        if let Ok(cvv) = Cvv::parse(&text, brand) {
            assert!(cvv.expose().bytes().all(|b| b.is_ascii_digit()));
        }
    }
    if let Ok(expiry) = parse_expiry(number(0) as i32, number(1) as i32, TODAY, ("m", "y")) {
        assert!((1..=12).contains(&expiry.month));
        assert!((u32::from(expiry.year), u32::from(expiry.month)) >= (2026, 11));
    }
    let _ = IdNumber::parse(&text, TODAY);
    if let Ok(phone) = Phone::parse(&text) {
        assert_eq!(phone.e164().len(), 14);
        assert!(phone.masked().contains("****"));
    }
    if let Ok(name) = FullName::parse(&text) {
        assert!(!name.as_str().is_empty());
        assert!(name.as_str().chars().count() <= 100);
    }
    let _ = MerchantUserId::parse(&text);
    let _ = OrderId::parse(&text);
    let _ = SessionId::parse(&text);
    let _ = PaymentId::parse(&text);
    let _ = BindingToken::parse(&text);
    if let Ok(key) = IdempotencyKey::parse(&text) {
        assert!((1..=128).contains(&key.as_str().chars().count()));
    }
    let _ = free_text(&text, 200, "x");
    let _ = required_text(&text, 100, "x");
    let _ = page_size(number(2) as i32);
    if let Ok(Some(cursor)) = PageCursor::decode(&text) {
        assert_eq!(PageCursor::decode(&cursor.encode()), Ok(Some(cursor)));
    }
    if let Ok(currency) = Currency::parse(&text) {
        if let Ok(money) = Money::new(number(3), currency) {
            assert!((1..=MAX_AMOUNT_MINOR).contains(&money.amount_minor()));
        }
    }
});

//! payment-svc's requests as bytes off the wire: decoded as each request
//! type, then converted to the domain's input; neither may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paybind_proto::payment::v1 as pb;
use paybind_shared::{clock::LocalDate, ids::SessionId};
use payment_svc::{
    domain::{
        bindings::BindingListing,
        payments::{PayInput, RefundInput},
        sessions::{NewSession, RawSubmission, Submission},
    },
    grpc::convert,
};

const TODAY: LocalDate = LocalDate {
    year: 2026,
    month: 11,
    day: 26,
};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((which, bytes)) = data.split_first() else {
        return;
    };
    match which % 8 {
        0 => {
            if let Ok(r) = pb::BindRequest::decode(bytes) {
                let _ = NewSession::try_from(r);
            }
        }
        1 => {
            if let Ok(r) = pb::BindAndPayRequest::decode(bytes) {
                if let Ok(new) = NewSession::try_from(r) {
                    assert!(new.payment.is_some());
                }
            }
        }
        2 => {
            if let Ok(r) = pb::PayRequest::decode(bytes) {
                if let Ok(input) = PayInput::try_from(r) {
                    assert!(input.amount.amount_minor() > 0);
                }
            }
        }
        3 => {
            if let Ok(r) = pb::RefundRequest::decode(bytes) {
                let _ = RefundInput::try_from(r);
            }
        }
        4 => {
            if let Ok(r) = pb::UnbindRequest::decode(bytes) {
                let _ = convert::unbind(r);
            }
        }
        5 => {
            if let Ok(r) = pb::SubmitBindInfoRequest::decode(bytes) {
                let shopper = r.shopper.unwrap_or_default();
                let card = r.card.unwrap_or_default();
                let raw = RawSubmission {
                    full_name: &shopper.full_name,
                    id_number: &shopper.id_number,
                    phone: &shopper.phone,
                    card_number: &card.number,
                    expiry_month: card.expiry_month,
                    expiry_year: card.expiry_year,
                    cvv: &card.cvv,
                };
                let _ = SessionId::parse(&r.session_id);
                if let Ok(submission) = Submission::parse(&raw, TODAY) {
                    assert_eq!(submission.card.last4().len(), 4);
                }
            }
        }
        6 => {
            if let Ok(r) = pb::VerifyBindRequest::decode(bytes) {
                let _ = SessionId::parse(&r.session_id);
            }
        }
        _ => {
            if let Ok(r) = pb::ListBindingsRequest::decode(bytes) {
                if let Ok(listing) = BindingListing::try_from(r) {
                    assert!((1..=100).contains(&listing.page_size));
                }
            }
        }
    }
});

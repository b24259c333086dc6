//! merchant-svc's requests as bytes off the wire: decoded as each request
//! type, then converted to the shop's input; neither may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use merchant_svc::{
    domain::{CheckoutInput, NewUser, OrderListing},
    grpc::convert,
};
use paybind_proto::merchant::v1 as mpb;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((which, bytes)) = data.split_first() else {
        return;
    };
    match which % 7 {
        0 => {
            if let Ok(r) = mpb::CreateUserRequest::decode(bytes) {
                if let Ok(user) = NewUser::try_from(r) {
                    assert!(!user.display_name.is_empty());
                }
            }
        }
        1 => {
            if let Ok(r) = mpb::CheckoutRequest::decode(bytes) {
                let _ = CheckoutInput::try_from(r);
            }
        }
        2 => {
            if let Ok(r) = mpb::ListOrdersRequest::decode(bytes) {
                let _ = OrderListing::try_from(r);
            }
        }
        3 => {
            if let Ok(r) = mpb::RefundOrderRequest::decode(bytes) {
                let _ = convert::refund(r.amount, &r.reason, &r.idempotency_key);
            }
        }
        4 => {
            if let Ok(r) = mpb::SubmitShopperInfoRequest::decode(bytes) {
                let _ = convert::session_id(&r.session_id);
                let _ = convert::shopper_entry(r.shopper, r.card);
            }
        }
        5 => {
            if let Ok(r) = mpb::GetOrderRequest::decode(bytes) {
                let _ = convert::order_id(&r.order_id);
            }
        }
        _ => {
            if let Ok(r) = mpb::StartBindingRequest::decode(bytes) {
                let _ = convert::presentation(r.presentation);
                let _ = convert::user_id(&r.user_id);
            }
        }
    }
});

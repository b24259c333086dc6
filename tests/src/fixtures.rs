//! The shopper, the card and the whole binding flow that most tests need
//! before they get to what they are about: one place, so that a test reads
//! as its scenario and a change to the flow is made once.
use tonic::transport::Channel;

use crate::{mpb, pb, Stack, RETURN_URL};

/// The test shopper's phone; `Stack::last_code` reads the codes sent to it.
pub const PHONE: &str = "+8613800138000";
/// A valid mainland ID number (checksum included).
pub const ID_NUMBER: &str = "11010519491231002X";
/// The simulator's always-approving card.
pub const VISA: &str = "4242424242424242";

pub type Client = pb::binding_service_client::BindingServiceClient<Channel>;
pub type Shop = mpb::merchant_service_client::MerchantServiceClient<Channel>;

pub fn shopper(full_name: &str) -> pb::ShopperInfo {
    pb::ShopperInfo {
        full_name: full_name.into(),
        id_number: ID_NUMBER.into(),
        phone: PHONE.into(),
    }
}

pub fn card(number: &str) -> pb::CardInfo {
    pb::CardInfo {
        number: number.into(),
        expiry_month: 12,
        expiry_year: 2031,
        cvv: "123".into(),
    }
}

/// Card `i` of the simulated issuer's load-test range (README, "Test
/// cards"): `40000200`, `i` in seven digits, and the Luhn check digit.
pub fn load_test_card(i: u32) -> String {
    let body = format!("40000200{:07}", i % 10_000_000);
    (0..10)
        .map(|check| format!("{body}{check}"))
        .find(|number| payment_svc::domain::card::luhn_valid(number))
        .unwrap_or(body)
}

/// Opens a Bind session for `user` (redirect, the test return URL); its id.
pub async fn open_session(c: &mut Client, user: &str) -> anyhow::Result<String> {
    Ok(c.bind(pb::BindRequest {
        merchant_user_id: user.into(),
        presentation: pb::Presentation::Redirect as i32,
        return_url: RETURN_URL.into(),
        prefill: None,
        idempotency_key: format!("bind-{user}"),
    })
    .await?
    .into_inner()
    .session
    .ok_or_else(|| anyhow::anyhow!("Bind answered without a session"))?
    .session_id)
}

/// Submits Zhang San's name and ID number with `phone` and `card_number`
/// (expiry 12/2031, CVV 123) to a session.
pub async fn submit_as_zhang_san(
    c: &mut Client,
    session_id: &str,
    card_number: &str,
    phone: &str,
) -> Result<pb::BindSession, tonic::Status> {
    c.submit_bind_info(pb::SubmitBindInfoRequest {
        session_id: session_id.into(),
        shopper: Some(pb::ShopperInfo {
            phone: phone.into(),
            ..shopper("Zhang San")
        }),
        card: Some(card(card_number)),
    })
    .await?
    .into_inner()
    .session
    .ok_or_else(|| tonic::Status::internal("SubmitBindInfo answered without a session"))
}

/// A bind session as `GetBindSession` shows it to the merchant.
pub async fn read_session(c: &mut Client, session_id: &str) -> anyhow::Result<pb::BindSession> {
    c.get_bind_session(pb::GetBindSessionRequest {
        session_id: session_id.into(),
    })
    .await?
    .into_inner()
    .session
    .ok_or_else(|| anyhow::anyhow!("GetBindSession answered without a session"))
}

/// Pays `amount` (CNY minor units) with `binding` for `user`, order
/// `order-KEY`, under idempotency key `key`: the payment, or the refusal.
pub async fn pay(
    c: &mut Client,
    binding: &pb::Binding,
    user: &str,
    amount: i64,
    key: &str,
) -> Result<pb::Payment, tonic::Status> {
    c.pay(pb::PayRequest {
        binding_token: binding.binding_token.clone(),
        merchant_user_id: user.into(),
        merchant_order_id: format!("order-{key}"),
        amount: crate::cny(amount),
        description: "tea".into(),
        idempotency_key: key.into(),
    })
    .await?
    .into_inner()
    .payment
    .ok_or_else(|| tonic::Status::internal("Pay answered without a payment"))
}

/// Binds `card` for `user` straight at payment-svc, as a merchant with
/// direct entry does: Bind, SubmitBindInfo, VerifyBind with the code sent.
pub async fn bind_card(
    stack: &Stack,
    c: &mut Client,
    user: &str,
    card_number: &str,
) -> anyhow::Result<pb::Binding> {
    bind_card_with_key(stack, c, user, card_number, &format!("bind-{user}")).await
}

/// As [`bind_card`], with the Bind request's idempotency key given (to bind
/// again for the same user).
pub async fn bind_card_with_key(
    stack: &Stack,
    c: &mut Client,
    user: &str,
    card_number: &str,
    key: &str,
) -> anyhow::Result<pb::Binding> {
    bind_with_card(stack, c, user, card(card_number), key).await
}

/// As [`bind_card_with_key`], with the card's details given whole (another
/// expiry, say).
pub async fn bind_with_card(
    stack: &Stack,
    c: &mut Client,
    user: &str,
    card_info: pb::CardInfo,
    key: &str,
) -> anyhow::Result<pb::Binding> {
    let session = c
        .bind(pb::BindRequest {
            merchant_user_id: user.into(),
            presentation: pb::Presentation::Redirect as i32,
            return_url: RETURN_URL.into(),
            prefill: None,
            idempotency_key: key.into(),
        })
        .await?
        .into_inner()
        .session
        .ok_or_else(|| anyhow::anyhow!("Bind answered without a session"))?;
    c.submit_bind_info(pb::SubmitBindInfoRequest {
        session_id: session.session_id.clone(),
        shopper: Some(shopper("Zhang San")),
        card: Some(card_info),
    })
    .await?;
    c.verify_bind(pb::VerifyBindRequest {
        session_id: session.session_id,
        code: stack.last_code(PHONE)?,
    })
    .await?
    .into_inner()
    .session
    .and_then(|session| session.binding)
    .ok_or_else(|| anyhow::anyhow!("VerifyBind answered without a binding"))
}

/// Creates `user` at merchant-svc and binds `card_number` through the shop
/// (direct entry: the shop relays what its page collected).
pub async fn shop_user_with_card(
    stack: &Stack,
    shop: &mut Shop,
    user: &str,
    card_number: &str,
) -> anyhow::Result<()> {
    shop.create_user(mpb::CreateUserRequest {
        user_id: user.into(),
        display_name: "Zhang San".into(),
        phone: PHONE.into(),
    })
    .await?;
    let started = shop
        .start_binding(mpb::StartBindingRequest {
            user_id: user.into(),
            presentation: pb::Presentation::Redirect as i32,
            return_url: String::new(),
        })
        .await?
        .into_inner();
    shop.submit_shopper_info(mpb::SubmitShopperInfoRequest {
        session_id: started.session_id.clone(),
        shopper: Some(shopper("Zhang San")),
        card: Some(card(card_number)),
    })
    .await?;
    shop.verify_shopper_code(mpb::VerifyShopperCodeRequest {
        session_id: started.session_id,
        code: stack.last_code(PHONE)?,
    })
    .await?;
    Ok(())
}

/// Whether the shop has a card on file for `user` (an unknown user has none).
pub async fn card_on_file(shop: &mut Shop, user: &str) -> anyhow::Result<bool> {
    Ok(shop
        .get_user(mpb::GetUserRequest {
            user_id: user.into(),
        })
        .await?
        .into_inner()
        .user
        .is_some_and(|u| u.card.is_some()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn load_test_cards_are_luhn_valid_and_distinct() {
        assert_eq!(super::load_test_card(1), "4000020000000018");
        let cards: std::collections::BTreeSet<String> =
            (0..200).map(super::load_test_card).collect();
        assert_eq!(cards.len(), 200);
        for card in &cards {
            assert_eq!(card.len(), 16);
            assert!(payment_svc::domain::card::luhn_valid(card), "{card}");
        }
    }
}

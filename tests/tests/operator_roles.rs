//! merchant-svc's operators have roles: a certificate listed with `read`
//! reads, `checkout` runs the storefront, `refund` refunds, `admin` does
//! everything; one the CA signed but not listed does nothing. Each refusal
//! is PERMISSION_DENIED, naming the role needed, and changes nothing.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use paybind_tests::{
    cny, fixtures::Shop, metadata_of, mpb, pb, reason, Stack, FINANCE, OPERATOR, READER, SHOP_A,
    STOREFRONT,
};
use tonic::{Code, Status};

type R = anyhow::Result<()>;

paybind_tests::on_both_backends!(with_merchant = true;
    each_operator_does_what_its_roles_allow,
);

fn assert_needs(result: Result<impl std::fmt::Debug, Status>, role: &str) {
    let err = result.expect_err("refused");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert_eq!(reason(&err), "ROLE_REQUIRED");
    assert_eq!(metadata_of(&err)["role"], role);
}

fn create(user: &str) -> mpb::CreateUserRequest {
    mpb::CreateUserRequest {
        user_id: user.into(),
        display_name: "Zhang San".into(),
        phone: "+8613800138000".into(),
    }
}

fn checkout(user: &str, key: &str) -> mpb::CheckoutRequest {
    mpb::CheckoutRequest {
        user_id: user.into(),
        amount: cny(1_999),
        description: "Green tea".into(),
        presentation: pb::Presentation::Redirect as i32,
        return_url: String::new(),
        idempotency_key: key.into(),
    }
}

async fn each_operator_does_what_its_roles_allow(stack: &Stack) -> R {
    let mut reader: Shop = stack.merchant_client(READER).await?;
    let mut storefront: Shop = stack.merchant_client(STOREFRONT).await?;
    let mut finance: Shop = stack.merchant_client(FINANCE).await?;
    let mut admin: Shop = stack.merchant_client(OPERATOR).await?;

    // The reader reads, and nothing more.
    assert_needs(reader.create_user(create("kim")).await, "checkout");
    storefront.create_user(create("kim")).await?;
    reader
        .get_user(mpb::GetUserRequest {
            user_id: "kim".into(),
        })
        .await?;
    assert_needs(reader.checkout(checkout("kim", "co-1")).await, "checkout");

    // The storefront checks out, but does not refund.
    let order = storefront
        .checkout(checkout("kim", "co-1"))
        .await?
        .into_inner()
        .order
        .expect("order");
    let refund = || mpb::RefundOrderRequest {
        order_id: order.order_id.clone(),
        amount: cny(100),
        reason: "damaged".into(),
        idempotency_key: "rf-1".into(),
    };
    assert_needs(storefront.refund_order(refund()).await, "refund");
    // Finance refunds (the order awaits the shopper, so the refund itself
    // is refused by the shop, not by the role), but reads nothing.
    let err = finance.refund_order(refund()).await.expect_err("not paid");
    assert_ne!(reason(&err), "ROLE_REQUIRED", "{err:?}");
    assert_needs(
        finance
            .get_order(mpb::GetOrderRequest {
                order_id: order.order_id.clone(),
            })
            .await,
        "read",
    );
    // The admin does everything.
    admin
        .get_order(mpb::GetOrderRequest {
            order_id: order.order_id.clone(),
        })
        .await?;

    // A certificate the CA signed but not listed: nothing at all.
    let mut stranger: Shop = stack.merchant_client(SHOP_A).await?;
    let err = stranger
        .get_user(mpb::GetUserRequest {
            user_id: "kim".into(),
        })
        .await
        .expect_err("not an operator");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason(&err), "CLIENT_NOT_ALLOWED");
    Ok(())
}

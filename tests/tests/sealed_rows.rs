//! A sealed card number opens only in its own row: the binding's merchant,
//! user and card are bound into the ciphertext's associated data. Someone
//! who can write the database and moves one binding's ciphertext into
//! another binding makes that binding unusable — never a charge to the
//! other card.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use paybind_tests::{
    execute_sql,
    fixtures::{bind_card, pay, VISA},
    pb, Stack, SHOP_A,
};

type R = anyhow::Result<()>;

paybind_tests::on_both_backends!(with_merchant = false;
    a_card_number_moved_to_another_binding_does_not_open_there,
);

/// Zhang San's Mastercard.
const MASTERCARD: &str = "5555555555554444";

async fn a_card_number_moved_to_another_binding_does_not_open_there(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let victim = bind_card(stack, &mut c, "victim", VISA).await?;
    let thief = bind_card(stack, &mut c, "thief", MASTERCARD).await?;
    // The thief's binding gets the victim's sealed card number.
    execute_sql(
        &stack.payment_db_url(),
        &format!(
            "UPDATE bindings SET (pan_ct, pan_key_id) = \
             (SELECT pan_ct, pan_key_id FROM bindings WHERE id = '{}') WHERE id = '{}'",
            victim.binding_id, thief.binding_id
        ),
    )
    .await?;
    let err = pay(&mut c, &thief, "thief", 100, "pay-1")
        .await
        .expect_err("the moved ciphertext does not open");
    assert_eq!(err.code(), tonic::Code::Internal, "{err:?}");
    assert_eq!(stack.acquirer.approved_charges(), 0, "no card was charged");
    // The victim's own binding still pays.
    let paid = pay(&mut c, &victim, "victim", 100, "pay-2").await?;
    assert_eq!(paid.status, pb::PaymentStatus::Succeeded as i32);
    Ok(())
}

//! Binding a card again: the user's existing binding is the binding, and it
//! takes what the shopper just gave (a new expiry). A card's fingerprint is
//! a different value at every merchant (a database reader cannot link a
//! card across merchants); fingerprints stored before are re-keyed, and
//! numbers sealed before bound to their rows, once, at start.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use paybind_tests::{
    execute_sql,
    fixtures::{bind_with_card, card, pay, Client, ID_NUMBER, VISA},
    pb, text_rows, Stack, SHOP_A, SHOP_B,
};
use payment_svc::domain::vault::{KeyedHasher, Purpose, Vault};

type R = anyhow::Result<()>;

paybind_tests::on_both_backends!(with_merchant = false;
    binding_a_card_again_keeps_the_binding_and_takes_the_new_expiry,
    a_card_has_another_fingerprint_at_each_merchant_and_old_ones_are_rekeyed,
);

/// Binds VISA for `user` with this expiry, under idempotency key `key`.
async fn bind(
    stack: &Stack,
    c: &mut Client,
    user: &str,
    key: &str,
    (month, year): (i32, i32),
) -> anyhow::Result<pb::Binding> {
    let card = pb::CardInfo {
        expiry_month: month,
        expiry_year: year,
        ..card(VISA)
    };
    bind_with_card(stack, c, user, card, key).await
}

async fn fingerprint_of(stack: &Stack, binding_id: &str) -> anyhow::Result<String> {
    Ok(text_rows(
        &stack.payment_db_url(),
        &format!("SELECT card_fingerprint FROM bindings WHERE id = '{binding_id}'"),
    )
    .await?
    .remove(0)
    .remove(0))
}

async fn binding_a_card_again_keeps_the_binding_and_takes_the_new_expiry(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let first = bind(stack, &mut c, "ray", "bind-1", (12, 2031)).await?;
    let again = bind(stack, &mut c, "ray", "bind-2", (6, 2033)).await?;
    assert_eq!(again.binding_id, first.binding_id, "the same binding");
    let listed = c
        .list_bindings(pb::ListBindingsRequest {
            merchant_user_id: "ray".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .bindings;
    assert_eq!(listed.len(), 1);
    let card = listed[0].card.as_ref().expect("card");
    assert_eq!(
        (card.expiry_month, card.expiry_year),
        (6, 2033),
        "the new expiry"
    );
    Ok(())
}

async fn a_card_has_another_fingerprint_at_each_merchant_and_old_ones_are_rekeyed(
    stack: &Stack,
) -> R {
    let mut a = stack.client(SHOP_A).await?;
    let mut b = stack.client(SHOP_B).await?;
    let at_a = bind(stack, &mut a, "sue", "bind-a", (12, 2031)).await?;
    let at_b = bind(stack, &mut b, "sue", "bind-b", (12, 2031)).await?;
    let (fa, fb) = (
        fingerprint_of(stack, &at_a.binding_id).await?,
        fingerprint_of(stack, &at_b.binding_id).await?,
    );
    assert_ne!(fa, fb, "one card, two merchants, two fingerprints");

    // As an earlier version stored it: one fingerprint at every merchant,
    // the numbers sealed with their purpose only.
    let secrets = &stack.payment_settings().secrets;
    let hasher = KeyedHasher::new("fingerprint", &secrets.fingerprint_key)?;
    let global = hasher.mac_hex(&[b"paybind/card/v1", VISA.as_bytes()]);
    let vault = Vault::new(&secrets.vault_keys, &secrets.active_vault_key)?;
    let url = stack.payment_db_url();
    let pan = vault.seal(Purpose::CardNumber, VISA.as_bytes())?;
    let id = vault.seal(Purpose::IdNumber, ID_NUMBER.as_bytes())?;
    execute_sql(
        &url,
        &format!(
            "UPDATE bindings SET card_fingerprint = '{global}', pan_ct = {}, id_number_ct = {}",
            blob(&url, &pan.blob),
            blob(&url, &id.blob)
        ),
    )
    .await?;
    execute_sql(
        &url,
        &format!("UPDATE card_checks SET card_fingerprint = '{global}'"),
    )
    .await?;
    execute_sql(&url, "DELETE FROM maintenance").await?;
    stack.stop_payment().await?;
    stack.restart_payment().await?;
    assert_eq!(
        fingerprint_of(stack, &at_a.binding_id).await?,
        fa,
        "re-keyed"
    );
    assert_eq!(fingerprint_of(stack, &at_b.binding_id).await?, fb);
    let done = text_rows(&url, "SELECT name FROM maintenance").await?;
    assert_eq!(done.len(), 1, "recorded once");
    // The issuers' answers kept no number to compute from: their old value
    // is keyed per merchant, so they no longer link the two merchants.
    let checks = text_rows(
        &url,
        "SELECT DISTINCT merchant_id, card_fingerprint FROM card_checks",
    )
    .await?;
    assert_eq!(checks.len(), 2, "{checks:?}");
    assert_ne!(checks[0][1], checks[1][1]);
    assert!(checks.iter().all(|c| c[1] != global));

    // And the card is found again for its user.
    let mut a = stack.client(SHOP_A).await?;
    let again = bind(stack, &mut a, "sue", "bind-a-2", (12, 2031)).await?;
    assert_eq!(again.binding_id, at_a.binding_id);
    // The re-sealed card pays.
    let paid = pay(&mut a, &again, "sue", 100, "pay-1").await?;
    assert_eq!(paid.status, pb::PaymentStatus::Succeeded as i32);
    Ok(())
}

/// `bytes` as an SQL literal of the database at `url`.
fn blob(url: &str, bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if url.starts_with("sqlite:") {
        format!("X'{hex}'")
    } else {
        format!("'\\x{hex}'::bytea")
    }
}

//! Auth-free limits are counted per card at each merchant: binding the same
//! card under another user id, or unbinding and binding it again, gives no
//! fresh daily limit; a declined payment gives its amount back to the card.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use paybind_tests::{
    fixtures::{bind_card, load_test_card, pay, Client, VISA},
    metadata_of, pb, reason, Stack, DAILY_LIMIT, PER_PAYMENT_LIMIT, SHOP_A, SHOP_B,
};
use tonic::Code;

type R = anyhow::Result<()>;

paybind_tests::on_both_backends!(with_merchant = false;
    one_card_has_one_daily_limit_whatever_binding_pays,
    a_declined_payment_gives_its_amount_back_to_the_card,
    many_cards_paying_at_once_keep_each_its_own_day,
);

/// Zhang San's Mastercard: another card, its own limit.
const MASTERCARD: &str = "5555555555554444";
/// Approved at binding, declined at every charge (insufficient funds).
const DECLINES_CHARGES: &str = "4000000000009995";

async fn remaining_today(c: &mut Client, user: &str) -> anyhow::Result<i64> {
    let bindings = c
        .list_bindings(pb::ListBindingsRequest {
            merchant_user_id: user.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .bindings;
    Ok(bindings[0]
        .limits
        .as_ref()
        .and_then(|l| l.remaining_today.as_ref())
        .map(|m| m.amount_minor)
        .expect("limits"))
}

fn assert_limit_exceeded(result: Result<pb::Payment, tonic::Status>, remaining: i64) {
    let err = result.expect_err("over the card's daily limit");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(reason(&err), "LIMIT_EXCEEDED");
    assert_eq!(metadata_of(&err)["remaining_today"], remaining.to_string());
}

async fn one_card_has_one_daily_limit_whatever_binding_pays(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let first = bind_card(stack, &mut c, "ann", VISA).await?;
    let second = bind_card(stack, &mut c, "ann-again", VISA).await?;
    assert_ne!(
        first.binding_id, second.binding_id,
        "two bindings, one card"
    );

    // The first binding uses the card's whole day.
    let payments = DAILY_LIMIT / PER_PAYMENT_LIMIT;
    for n in 0..payments {
        let paid = pay(&mut c, &first, "ann", PER_PAYMENT_LIMIT, &format!("k-{n}")).await?;
        assert_eq!(paid.status, pb::PaymentStatus::Succeeded as i32);
    }
    // The other binding of the same card has nothing left either.
    assert_limit_exceeded(pay(&mut c, &second, "ann-again", 100, "k-second").await, 0);
    assert_eq!(remaining_today(&mut c, "ann-again").await?, 0);

    // Unbound and bound again: still the same card, still used up.
    c.unbind(pb::UnbindRequest {
        binding_token: first.binding_token.clone(),
        merchant_user_id: "ann".into(),
        reason: "removed".into(),
    })
    .await?;
    let rebound =
        paybind_tests::fixtures::bind_card_with_key(stack, &mut c, "ann", VISA, "bind-ann-2")
            .await?;
    assert_ne!(rebound.binding_id, first.binding_id);
    assert_limit_exceeded(pay(&mut c, &rebound, "ann", 100, "k-rebound").await, 0);

    // Another card has its own day; the same card at another merchant too.
    let other_card = bind_card(stack, &mut c, "ann-mc", MASTERCARD).await?;
    pay(&mut c, &other_card, "ann-mc", 100, "k-mc").await?;
    let mut b = stack.client(SHOP_B).await?;
    let elsewhere = bind_card(stack, &mut b, "ann", VISA).await?;
    pay(&mut b, &elsewhere, "ann", 100, "k-b").await?;
    Ok(())
}

async fn a_declined_payment_gives_its_amount_back_to_the_card(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let first = bind_card(stack, &mut c, "dee", DECLINES_CHARGES).await?;
    bind_card(stack, &mut c, "dee-again", DECLINES_CHARGES).await?;
    let declined = pay(&mut c, &first, "dee", PER_PAYMENT_LIMIT, "k-1").await?;
    assert_eq!(declined.status, pb::PaymentStatus::Declined as i32);
    assert_eq!(remaining_today(&mut c, "dee-again").await?, DAILY_LIMIT);
    assert_eq!(remaining_today(&mut c, "dee").await?, DAILY_LIMIT);
    Ok(())
}

/// Each of `cards` pays `PER_PAYMENT_LIMIT` at once, with the key
/// `{round}-{user}`; the answers in the cards' order.
async fn every_card_pays_at_once(
    c: &Client,
    cards: &[(String, pb::Binding)],
    round: &str,
) -> anyhow::Result<Vec<Result<pb::Payment, tonic::Status>>> {
    let tasks: Vec<_> = cards
        .iter()
        .map(|(user, binding)| {
            let (mut c, user, binding) = (c.clone(), user.clone(), binding.clone());
            let key = format!("{round}-{user}");
            tokio::spawn(async move { pay(&mut c, &binding, &user, PER_PAYMENT_LIMIT, &key).await })
        })
        .collect();
    let mut answers = Vec::with_capacity(tasks.len());
    for task in tasks {
        answers.push(task.await?);
    }
    Ok(answers)
}

/// Many cards paying at the same moment, each once per round: their
/// reservations are taken together (PostgreSQL checks and writes such a
/// batch of distinct cards set-wise), and still each card has its own day
/// and each key its one payment.
async fn many_cards_paying_at_once_keep_each_its_own_day(stack: &Stack) -> R {
    const CARDS: u32 = 12;
    let mut c = stack.client(SHOP_A).await?;
    let mut cards = Vec::new();
    for i in 0..CARDS {
        let user = format!("many-{i}");
        let binding = bind_card(stack, &mut c, &user, &load_test_card(i)).await?;
        cards.push((user, binding));
    }
    let full_rounds = DAILY_LIMIT / PER_PAYMENT_LIMIT;
    let mut first_round = Vec::new();
    for round in 0..full_rounds {
        for answer in every_card_pays_at_once(&c, &cards, &format!("r{round}")).await? {
            let payment = answer?;
            assert_eq!(
                payment.status,
                pb::PaymentStatus::Succeeded as i32,
                "{payment:?}"
            );
            if round == 0 {
                first_round.push(payment.payment_id);
            }
        }
    }
    // One round more than the day holds: every card is refused, with what
    // is left of its own day.
    for answer in every_card_pays_at_once(&c, &cards, "over").await? {
        assert_limit_exceeded(answer, DAILY_LIMIT - full_rounds * PER_PAYMENT_LIMIT);
    }
    // The first round sent again, all at once: the same payments, nothing
    // charged twice.
    let again = every_card_pays_at_once(&c, &cards, "r0").await?;
    for (answer, first) in again.into_iter().zip(&first_round) {
        let payment = answer?;
        assert_eq!(&payment.payment_id, first);
        assert_eq!(payment.status, pb::PaymentStatus::Succeeded as i32);
    }
    assert_eq!(
        stack.acquirer.net_charged(),
        i64::from(CARDS) * full_rounds * PER_PAYMENT_LIMIT
    );
    for (user, _) in &cards {
        assert_eq!(
            remaining_today(&mut c, user).await?,
            DAILY_LIMIT - full_rounds * PER_PAYMENT_LIMIT
        );
    }
    Ok(())
}

//! What is stored, and what is read back: an unknown status cannot be
//! written, and one that is there anyway is an error that names its column,
//! never a default; the migrations that added the constraints keep the data
//! written before them. Each on SQLite and on PostgreSQL.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use paybind_shared::{
    db::StoreError,
    ids::{BindingId, MerchantId, MerchantUserId, OrderId, PaymentId, SessionId},
    model::{CardBrand, PaymentStatus, Presentation},
};
use paybind_tests::{
    cny,
    fixtures::{shop_user_with_card, VISA},
    mpb, pb, reason, Backend, ScratchDatabase, Stack, OPERATOR, SHOP_A,
};
use payment_svc::domain::model::{PaymentState, SessionState};
use sqlx::{Connection, Executor};
use tonic::Code;

type R = anyhow::Result<()>;

paybind_tests::on_both_backends!(with_merchant = true;
    an_unknown_stored_status_cannot_be_written_and_fails_loudly_when_read,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_keep_the_data_written_before_them_sqlite() -> R {
    migrations_keep_data(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_keep_the_data_written_before_them_postgres() -> R {
    migrations_keep_data(Backend::Postgres).await
}

// ---------------------------------------------------------------- helpers

/// Runs `sql` on the database at `url`: first as it is (a CHECK constraint
/// must refuse it), then with the constraint out of the way, as a broken
/// tool or a hand edit would.
async fn tamper(url: &str, sql: &str, constraint: &str) -> R {
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        let refused = conn.execute(sql).await.expect_err("the CHECK refuses it");
        assert!(refused.to_string().contains("CHECK"), "{refused}");
        conn.execute("PRAGMA ignore_check_constraints = ON").await?;
        conn.execute(sql).await?;
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        let refused = conn.execute(sql).await.expect_err("the CHECK refuses it");
        assert!(refused.to_string().contains(constraint), "{refused}");
        let table = constraint.split('_').next().expect("table");
        conn.execute(format!("ALTER TABLE {table} DROP CONSTRAINT {constraint}").as_str())
            .await?;
        conn.execute(sql).await?;
    }
    Ok(())
}

fn assert_corrupt<T: std::fmt::Debug>(read: Result<T, StoreError>, column: &str, value: &str) {
    match read {
        Err(StoreError::Corrupt(message)) => {
            assert!(message.contains(column), "{message}");
            assert!(message.contains(value), "{message}");
        }
        other => panic!("expected a corrupt-data error naming {column}, got {other:?}"),
    }
}

// -------------------------------------------------------------- scenarios

async fn an_unknown_stored_status_cannot_be_written_and_fails_loudly_when_read(stack: &Stack) -> R {
    // A paid order: one payment at payment-svc, one order at the shop.
    let mut shop = stack.merchant_client(OPERATOR).await?;
    shop_user_with_card(stack, &mut shop, "ida", VISA).await?;
    let order = shop
        .checkout(mpb::CheckoutRequest {
            user_id: "ida".into(),
            amount: cny(1_000),
            description: "tea".into(),
            presentation: 0,
            return_url: String::new(),
            idempotency_key: "co-ida".into(),
        })
        .await?
        .into_inner()
        .order
        .expect("order");
    assert_eq!(order.status, mpb::OrderStatus::Paid as i32);

    // payment-svc: payments.status.
    let url = stack.payment_db_url();
    tamper(
        &url,
        &format!(
            "UPDATE payments SET status = 'SETTLED' WHERE id = '{}'",
            order.payment_id
        ),
        "payments_status_known",
    )
    .await?;
    let mut payments = stack.client(SHOP_A).await?;
    let err = payments
        .get_payment(pb::GetPaymentRequest {
            payment_id: order.payment_id.clone(),
        })
        .await
        .expect_err("unreadable");
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (Code::Internal, "INTERNAL")
    );
    assert!(!err.message().contains("SETTLED"), "details stay inside");
    let store = payment_svc::store::connect(&url, 1).await?;
    assert_corrupt(
        store
            .get_payment(
                &MerchantId::parse(SHOP_A)?,
                &PaymentId::parse(&order.payment_id)?,
            )
            .await,
        "payments.status",
        "SETTLED",
    );

    // merchant-svc: orders.status.
    let url = stack.merchant_db_url()?;
    tamper(
        &url,
        &format!(
            "UPDATE orders SET status = 'SHIPPED' WHERE id = '{}'",
            order.order_id
        ),
        "orders_status_known",
    )
    .await?;
    let err = shop
        .get_order(mpb::GetOrderRequest {
            order_id: order.order_id.clone(),
        })
        .await
        .expect_err("unreadable");
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (Code::Internal, "INTERNAL")
    );
    let store = merchant_svc::store::connect(&url, 1, token_vault()?).await?;
    assert_corrupt(
        store.get_order(&OrderId::parse(&order.order_id)?).await,
        "orders.status",
        "SHIPPED",
    );
    Ok(())
}

/// A fresh key for merchant-svc's tokens.
fn token_vault() -> anyhow::Result<std::sync::Arc<paybind_shared::vault::Vault>> {
    Ok(std::sync::Arc::new(
        merchant_svc::config::Secrets::generate().vault()?,
    ))
}

/// The migrations of `service` (a folder under the repository) that an
/// earlier release had applied: those numbered below `first_new`.
async fn apply_earlier_migrations(
    service: &str,
    backend: Backend,
    first_new: u32,
    url: &str,
) -> anyhow::Result<tempfile::TempDir> {
    let folder = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let source: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(service)
        .join("migrations")
        .join(folder);
    let earlier = tempfile::tempdir()?;
    for entry in std::fs::read_dir(&source)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let number: u32 = name[..4].parse()?;
        if number < first_new {
            std::fs::copy(&path, earlier.path().join(&name))?;
        }
    }
    let migrator = sqlx::migrate::Migrator::new(earlier.path()).await?;
    match backend {
        Backend::Sqlite => {
            use std::str::FromStr;
            let options =
                sqlx::sqlite::SqliteConnectOptions::from_str(url)?.create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(options).await?;
            migrator.run(&pool).await?;
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(url).await?;
            migrator.run(&pool).await?;
            pool.close().await;
        }
    }
    Ok(earlier)
}

async fn execute(url: &str, statements: &[&str]) -> R {
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        for s in statements {
            conn.execute(*s).await?;
        }
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        for s in statements {
            conn.execute(*s).await?;
        }
    }
    Ok(())
}

async fn migrations_keep_data(backend: Backend) -> R {
    paybind_shared::telemetry::init_for_tests();
    // payment-svc, as release 0.1 left it (migrations 0001-0002).
    let Some(payment_db) = ScratchDatabase::create(backend).await? else {
        return Ok(());
    };
    let _earlier = apply_earlier_migrations("payment-svc", backend, 3, &payment_db.url).await?;
    let bytes = if backend == Backend::Sqlite {
        "x'00'"
    } else {
        "'\\x00'::bytea"
    };
    execute(
        &payment_db.url,
        &[
            "INSERT INTO merchants VALUES ('m1', 'Shop', 'm1', '[]', '[\"https://shop.example/\"]', \
             TRUE, 'CNY', 50000, 200000, 1)",
            &format!(
                "INSERT INTO bindings VALUES ('bnd_00000000000000000000000000000001', 'm1', 'u1', \
                 'ACTIVE', 'fp', {bytes}, 'k1', 'VISA', '4242', 12, 2031, 'Zhang San', {bytes}, \
                 'k1', '+8613800138000', 'CNY', 50000, 200000, 0, 0, 1, NULL, NULL)"
            ),
            "INSERT INTO payments VALUES ('pay_1', 'm1', 'u1', 'bnd_00000000000000000000000000000001', \
             NULL, 'o1', 1000, 'CNY', 'tea', 'SUCCEEDED', NULL, 'acq_1', 20000, 100, FALSE, 'k1', \
             'h', 1, 2)",
            "INSERT INTO refunds VALUES ('rfd_1', 'm1', 'pay_1', 100, 'CNY', 'SUCCEEDED', 'r', \
             'rk', 'h', 3, 4)",
            &format!(
                "INSERT INTO bind_sessions VALUES ('bs_1', 'm1', 'u1', 'BIND_AND_PAY', 'POPUP', \
                 'https://shop.example/r', NULL, NULL, 'AWAITING_VERIFICATION', 2, 1, 9999999999999, \
                 3, 'sk', 'h', 'o2', 500, 'CNY', 'cake', 'Zhang San', {bytes}, 'k1', \
                 '+8613800138000', {bytes}, 'k1', 'fp2', 'MASTERCARD', '4444', 11, 2030, 'otp', \
                 9999999999999, 4, 5, 1, NULL, NULL, NULL)"
            ),
        ],
    )
    .await?;
    let store = payment_svc::store::connect(&payment_db.url, 1).await?;
    let merchant = MerchantId::parse("m1")?;
    let payment = store
        .get_payment(&merchant, &PaymentId::parse("pay_1")?)
        .await?
        .expect("payment kept");
    assert_eq!(payment.status(), PaymentStatus::Succeeded);
    assert_eq!(
        payment.state,
        PaymentState::Succeeded {
            acquirer_ref: "acq_1".into()
        }
    );
    assert_eq!(
        (payment.amount.amount_minor(), payment.refunded_minor),
        (1000, 100)
    );
    let binding = store
        .get_binding(
            &merchant,
            &BindingId::parse("bnd_00000000000000000000000000000001")?,
        )
        .await?
        .expect("binding kept");
    assert_eq!(binding.card.brand, CardBrand::Visa);
    assert!(binding.revocation().is_none());
    let session = store
        .get_session(&merchant, &SessionId::parse("bs_1")?)
        .await?
        .expect("session kept");
    assert_eq!(session.presentation, Presentation::Popup);
    assert_eq!(
        session.purchase.expect("purchase").amount.amount_minor(),
        500
    );
    match session.state {
        SessionState::AwaitingVerification { submitted, code } => {
            assert_eq!(submitted.card.brand, CardBrand::Mastercard);
            assert_eq!((code.tries_left, code.resends), (4, 1));
        }
        other => panic!("expected a session awaiting its code, got {other:?}"),
    }
    assert_eq!(store.list_merchants().await?.len(), 1);
    drop(store);
    payment_db.drop().await?;

    // merchant-svc, as release 0.1 left it (migration 0001); a card brand it
    // could not name was stored as ''.
    let Some(merchant_db) = ScratchDatabase::create(backend).await? else {
        return Ok(());
    };
    let _earlier = apply_earlier_migrations("merchant-svc", backend, 2, &merchant_db.url).await?;
    execute(
        &merchant_db.url,
        &[
            "INSERT INTO users VALUES ('u1', 'Zhang San', '+8613800138000', 1, 'bnd_1', 'pbt_1', \
             '', '4242', 12, 2031, 5)",
            "INSERT INTO orders VALUES ('ord_1', 'u1', 1000, 'CNY', 'tea', 'PAID', NULL, 'pay_1', \
             0, NULL, NULL, TRUE, 'PRESENTATION_EMBEDDED', 'https://shop.example/', 'k1', 'h', 1, 2)",
            "INSERT INTO bind_sessions VALUES ('bs_1', 'u1', 'ord_1', 1)",
        ],
    )
    .await?;
    let store = merchant_svc::store::connect(&merchant_db.url, 1, token_vault()?).await?;
    let user = store
        .get_user(&MerchantUserId::parse("u1")?)
        .await?
        .expect("user kept");
    let card = user.card.expect("card kept");
    assert_eq!(card.brand, CardBrand::Other, "'' is named OTHER");
    assert_eq!(card.token.expose(), "pbt_1");
    // The token stored in plain text was sealed in place at start.
    let stored = paybind_tests::text_rows(&merchant_db.url, "SELECT binding_token FROM users")
        .await?
        .remove(0)
        .remove(0);
    assert!(
        stored.starts_with("k1:") && !stored.contains("pbt_1"),
        "{stored}"
    );
    let order = store
        .get_order(&OrderId::parse("ord_1")?)
        .await?
        .expect("order kept");
    assert_eq!(order.presentation, Presentation::Embedded);
    assert_eq!(
        store.session_user(&SessionId::parse("bs_1")?).await?,
        Some(MerchantUserId::parse("u1")?)
    );
    drop(store);
    merchant_db.drop().await?;
    Ok(())
}

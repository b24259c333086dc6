//! paybind's fault suite: both services as real processes (see
//! `paybind_tests::system`), on SQLite and on PostgreSQL, put through what
//! an operator's bad day looks like while shoppers pay:
//!
//! - `kill -9` of payment-svc under load, several times, then of merchant-svc;
//! - payment-svc stopped with SIGSTOP for 3 s, then continued;
//! - (PostgreSQL) every database connection of both services terminated,
//!   again and again, for 3 s;
//! - the mixed-decline load that once deadlocked PostgreSQL (2,000 payments,
//!   256 in flight, 16 bindings of which 2 decline every charge);
//! - an idle-connection flood against payment-svc under a 1,024 open-files
//!   limit, with new clients probing it, and its memory after.
//!
//! After each, with no client retrying, every charge left in flight must be
//! settled by the services themselves within a few seconds; then every
//! request that got no answer is sent again with its key (and must be
//! answered at once), and the invariants are checked against both
//! databases and the card network's journal: every acknowledged answer
//! unchanged; one payment per key and at most one successful payment per
//! order; nothing PENDING; each shop user's paid orders adding up to its
//! successful payments, each one paid order per successful payment; each
//! binding's usage today equal to its non-declined payments today; the card
//! network charged exactly what payment-svc recorded as succeeded.
//!
//! `.ci/run` runs a bounded version; `--rounds` and `--load-seconds` make it
//! a soak (figures in RELIABILITY.md).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Parser;
use paybind_tests::{
    mpb, pb,
    system::{rss_mb, signal, Endpoints, System, SystemOptions},
    Backend,
};
use sqlx::{Connection, Executor, Row};
use tokio::sync::Semaphore;
use tonic::Code;

#[derive(Parser)]
#[command(
    name = "fault_suite",
    about = "paybind under kill -9, SIGSTOP, cut connections and floods"
)]
struct Args {
    /// sqlite, postgres or both.
    #[arg(long, default_value = "both")]
    backend: String,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres: String,
    /// kill -9 rounds of payment-svc (each one under load).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds of load around each fault.
    #[arg(long, default_value_t = 2.0)]
    load_seconds: f64,
    /// Concurrent shoppers (half pay through the shop, half straight).
    #[arg(long, default_value_t = 8)]
    workers: usize,
}

const VISA: &str = "4242424242424242";
const DECLINES_CHARGES: &str = "4000000000000341";
const AMOUNT: i64 = 100;

/// A request and what it was answered; `None` until it has an answer.
#[derive(Debug, Clone)]
enum Request {
    Checkout {
        user: String,
        key: String,
    },
    Pay {
        user: String,
        token: String,
        key: String,
    },
}

/// An answer as acknowledged to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ack {
    Order { id: String, status: i32 },
    Payment { id: String, status: i32 },
}

#[derive(Default)]
struct Ledger {
    acks: Vec<(Request, Ack)>,
    unanswered: Vec<Request>,
}

struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    ledger: Arc<Mutex<Ledger>>,
}

async fn send(system: &Endpoints, request: &Request) -> Result<Ack, tonic::Status> {
    let client_error = |e: anyhow::Error| tonic::Status::unavailable(e.to_string());
    match request {
        Request::Checkout { user, key } => {
            let mut shop = system.shop_client().map_err(client_error)?;
            let order = shop
                .checkout(mpb::CheckoutRequest {
                    user_id: user.clone(),
                    amount: paybind_tests::cny(AMOUNT),
                    description: String::new(),
                    presentation: 0,
                    return_url: String::new(),
                    idempotency_key: key.clone(),
                })
                .await?
                .into_inner()
                .order
                .ok_or_else(|| tonic::Status::internal("no order"))?;
            Ok(Ack::Order {
                id: order.order_id,
                status: order.status,
            })
        }
        Request::Pay { user, token, key } => {
            let mut c = system.payment_client().map_err(client_error)?;
            let payment = c
                .pay(pb::PayRequest {
                    binding_token: token.clone(),
                    merchant_user_id: user.clone(),
                    merchant_order_id: format!("o-{key}"),
                    amount: paybind_tests::cny(AMOUNT),
                    description: String::new(),
                    idempotency_key: key.clone(),
                })
                .await?
                .into_inner()
                .payment
                .ok_or_else(|| tonic::Status::internal("no payment"))?;
            Ok(Ack::Payment {
                id: payment.payment_id,
                status: payment.status,
            })
        }
    }
}

impl Load {
    /// Shoppers paying until stopped: even workers check out through the
    /// shop, odd ones pay straight with their token.
    fn start(system: Endpoints, tokens: Arc<Vec<String>>, workers: usize, run: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let mut tasks = Vec::new();
        for w in 0..workers {
            let (system, tokens, stop, ledger, run) = (
                system.clone(),
                tokens.clone(),
                stop.clone(),
                ledger.clone(),
                run.to_owned(),
            );
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("{run}-{w}-{i}");
                    let request = if w % 2 == 0 {
                        Request::Checkout {
                            user: format!("shopper-{}", w / 2),
                            key,
                        }
                    } else {
                        Request::Pay {
                            user: format!("direct-{}", w / 2),
                            token: tokens[w / 2].clone(),
                            key,
                        }
                    };
                    match send(&system, &request).await {
                        Ok(ack) => ledger.lock().unwrap().acks.push((request, ack)),
                        Err(_) => {
                            ledger.lock().unwrap().unanswered.push(request);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    i += 1;
                }
            }));
        }
        Self {
            stop,
            tasks,
            ledger,
        }
    }

    async fn stop(self) -> Ledger {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        std::mem::take(&mut *self.ledger.lock().unwrap())
    }
}

/// The databases, for the invariants.
enum Db {
    Sqlite(sqlx::SqliteConnection),
    Pg(sqlx::PgConnection),
}

impl Db {
    async fn open(url: &str) -> anyhow::Result<Self> {
        Ok(if url.starts_with("sqlite:") {
            Db::Sqlite(sqlx::SqliteConnection::connect(url).await?)
        } else {
            Db::Pg(sqlx::PgConnection::connect(url).await?)
        })
    }

    /// One BIGINT.
    async fn number(&mut self, sql: &str) -> anyhow::Result<i64> {
        Ok(match self {
            Db::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(c).await?,
            Db::Pg(c) => sqlx::query_scalar(sql).fetch_one(c).await?,
        })
    }

    /// Rows of (TEXT, BIGINT).
    async fn pairs(&mut self, sql: &str) -> anyhow::Result<BTreeMap<String, i64>> {
        let rows: Vec<(String, i64)> = match self {
            Db::Sqlite(c) => sqlx::query(sql)
                .fetch_all(c)
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect(),
            Db::Pg(c) => sqlx::query(sql)
                .fetch_all(c)
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect(),
        };
        Ok(rows.into_iter().collect())
    }
}

/// Waits, with no client retrying, for every charge in flight to be settled
/// and every order to leave PENDING_PAYMENT; how long it took.
async fn settled_by_the_services(system: &System, limit: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let mut p = Db::open(&system.payment_db).await?;
        let mut m = Db::open(&system.merchant_db).await?;
        let in_flight = p.number("SELECT COUNT(*) FROM pending_charges").await?
            + p.number("SELECT COUNT(*) FROM payments WHERE status = 'PENDING'")
                .await?;
        let pending_orders = m
            .number("SELECT COUNT(*) FROM orders WHERE status = 'PENDING_PAYMENT'")
            .await?;
        if in_flight == 0 && pending_orders == 0 {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "after {limit:?}: {in_flight} charges in flight, {pending_orders} orders pending"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends every unanswered request again with its key until it is answered;
/// the slowest answer.
async fn answer_the_unanswered(
    system: &Endpoints,
    ledger: &mut Ledger,
) -> anyhow::Result<Duration> {
    let mut slowest = Duration::ZERO;
    for request in std::mem::take(&mut ledger.unanswered) {
        let started = Instant::now();
        let ack = loop {
            match send(system, &request).await {
                Ok(ack) => break ack,
                Err(s) if started.elapsed() < Duration::from_secs(30) => {
                    anyhow::ensure!(
                        matches!(
                            s.code(),
                            Code::Unavailable
                                | Code::Aborted
                                | Code::DeadlineExceeded
                                | Code::Cancelled
                        ),
                        "{request:?}: {s:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(s) => anyhow::bail!("{request:?} still unanswered: {s:?}"),
            }
        };
        slowest = slowest.max(started.elapsed());
        ledger.acks.push((request, ack));
    }
    Ok(slowest)
}

/// The invariants, against both databases, the journal and the APIs.
async fn check_invariants(system: &System, ledger: &Ledger) -> anyhow::Result<()> {
    let mut p = Db::open(&system.payment_db).await?;
    let mut m = Db::open(&system.merchant_db).await?;
    anyhow::ensure!(
        p.number("SELECT COUNT(*) FROM payments WHERE status = 'PENDING'")
            .await?
            == 0,
        "payments left PENDING"
    );
    anyhow::ensure!(
        p.number("SELECT COUNT(*) FROM pending_charges").await? == 0,
        "charges left in flight"
    );
    anyhow::ensure!(
        p.number(
            "SELECT COUNT(*) FROM (SELECT order_id FROM payments WHERE status = 'SUCCEEDED' \
             GROUP BY merchant_id, order_id HAVING COUNT(*) > 1) twice"
        )
        .await?
            == 0,
        "an order paid twice"
    );
    anyhow::ensure!(
        p.number(
            "SELECT COUNT(*) FROM card_usage cu WHERE cu.usage_amount <> \
             (SELECT CAST(COALESCE(SUM(x.amount_minor), 0) AS BIGINT) FROM payments x \
              JOIN bindings b ON b.id = x.binding_id \
              WHERE b.merchant_id = cu.merchant_id AND b.card_fingerprint = cu.card_fingerprint \
                AND x.counted_day = cu.usage_day AND x.status <> 'DECLINED' \
                AND NOT x.shopper_authenticated)"
        )
        .await?
            == 0,
        "a card's usage differs from its payments"
    );
    // The event feed: every settled payment told exactly once, with its
    // outcome, and nothing told of a change that did not commit.
    anyhow::ensure!(
        p.number(
            "SELECT COUNT(*) FROM payments x WHERE x.status <> 'PENDING' AND \
             (SELECT COUNT(*) FROM events e WHERE e.resource_id = x.id AND \
              e.event_type = CASE x.status WHEN 'SUCCEEDED' THEN 'PAYMENT_SUCCEEDED' \
                                           ELSE 'PAYMENT_DECLINED' END) <> 1"
        )
        .await?
            == 0,
        "a settled payment not told exactly once in the event feed"
    );
    anyhow::ensure!(
        p.number(
            "SELECT COUNT(*) FROM events e WHERE e.event_type LIKE 'PAYMENT_%' AND NOT EXISTS \
             (SELECT 1 FROM payments x WHERE x.id = e.resource_id AND x.status <> 'PENDING')"
        )
        .await?
            == 0,
        "an event told of a payment outcome that was not recorded"
    );
    // Pushed notifications: every event of the shop delivered (waiting out
    // retries after the fault), none given up, each with the one attempt
    // that was acknowledged on record.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let pending = p
            .number("SELECT COUNT(*) FROM deliveries WHERE status = 'PENDING'")
            .await?;
        if pending == 0 {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{pending} notifications still pending 30 s after the fault"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::ensure!(
        p.number(
            "SELECT COUNT(*) FROM events e WHERE e.seq IS NOT NULL AND NOT EXISTS \
             (SELECT 1 FROM deliveries d WHERE d.seq = e.seq AND d.status = 'DELIVERED')"
        )
        .await?
            == 0,
        "an event not delivered to the shop"
    );
    anyhow::ensure!(
        p.number(
            "SELECT COUNT(*) FROM deliveries d WHERE d.status = 'DELIVERED' AND \
             (SELECT COUNT(*) FROM delivery_attempts a WHERE a.seq = d.seq \
              AND a.outcome = 'ACKNOWLEDGED') <> 1"
        )
        .await?
            == 0,
        "a delivered notification without exactly one acknowledged attempt"
    );
    // The shop's paid orders and payment-svc's successful payments agree.
    let paid_at_payment = p
        .pairs(
            "SELECT merchant_user_id, CAST(SUM(amount_minor) AS BIGINT) FROM payments \
             WHERE status = 'SUCCEEDED' AND merchant_user_id LIKE 'shopper-%' \
             GROUP BY merchant_user_id",
        )
        .await?;
    let paid_at_shop = m
        .pairs(
            "SELECT user_id, CAST(SUM(amount_minor) AS BIGINT) FROM orders \
             WHERE status = 'PAID' GROUP BY user_id",
        )
        .await?;
    anyhow::ensure!(
        paid_at_payment == paid_at_shop,
        "paid orders {paid_at_shop:?} vs successful payments {paid_at_payment:?}"
    );
    let payments_of_orders = p
        .pairs(
            "SELECT order_id, COUNT(*) FROM payments WHERE status = 'SUCCEEDED' \
             AND merchant_user_id LIKE 'shopper-%' GROUP BY order_id",
        )
        .await?;
    let paid_orders = m
        .pairs("SELECT id, COUNT(*) FROM orders WHERE status = 'PAID' GROUP BY id")
        .await?;
    anyhow::ensure!(
        payments_of_orders == paid_orders,
        "a successful payment without its paid order, or the reverse"
    );
    // The card network charged exactly what payment-svc recorded.
    let succeeded = p
        .number(
            "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM payments \
             WHERE status = 'SUCCEEDED'",
        )
        .await?;
    let journal = std::fs::read_to_string(&system.acquirer_journal)?;
    let charged: i64 = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["op"] == "charge" && v["approved"].is_string())
        .map(|v| v["amount"].as_i64().unwrap_or(0))
        .sum();
    anyhow::ensure!(
        charged == succeeded,
        "the network charged {charged}, payment-svc recorded {succeeded}"
    );
    // Every acknowledged final answer is still the answer.
    let final_statuses = [
        mpb::OrderStatus::Paid as i32,
        mpb::OrderStatus::Declined as i32,
    ];
    let mut shop = system.shop_client().await?;
    let mut pay = system.payment_client().await?;
    for (request, ack) in &ledger.acks {
        match ack {
            Ack::Order { id, status } => {
                let now = shop
                    .get_order(mpb::GetOrderRequest {
                        order_id: id.clone(),
                    })
                    .await?
                    .into_inner()
                    .order
                    .context("order")?;
                if final_statuses.contains(status) {
                    anyhow::ensure!(
                        now.status == *status,
                        "{request:?}: {status} became {}",
                        now.status
                    );
                }
            }
            Ack::Payment { id, status } => {
                let now = pay
                    .get_payment(pb::GetPaymentRequest {
                        payment_id: id.clone(),
                    })
                    .await?
                    .into_inner()
                    .payment
                    .context("payment")?;
                if *status != pb::PaymentStatus::Pending as i32 {
                    anyhow::ensure!(
                        now.status == *status,
                        "{request:?}: {status} became {}",
                        now.status
                    );
                }
            }
        }
    }
    Ok(())
}

/// After a fault: the services settle on their own, then every unanswered
/// request gets its answer, then the invariants hold.
async fn recover_and_check(system: &System, mut ledger: Ledger, what: &str) -> anyhow::Result<()> {
    let by_themselves = settled_by_the_services(system, Duration::from_secs(20)).await?;
    let unanswered = ledger.unanswered.len();
    let slowest = answer_the_unanswered(&system.endpoints(), &mut ledger).await?;
    settled_by_the_services(system, Duration::from_secs(20)).await?;
    check_invariants(system, &ledger).await?;
    println!(
        "  {what}: {} answered, {unanswered} sent again (slowest answer {:.0} ms), settled by the services in {:.1} s; invariants hold",
        ledger.acks.len(),
        slowest.as_secs_f64() * 1000.0,
        by_themselves.as_secs_f64()
    );
    Ok(())
}

async fn mixed_declines(system: &System, round: usize) -> anyhow::Result<()> {
    const BINDINGS: usize = 16;
    let mut tokens = Vec::new();
    for b in 0..BINDINGS {
        let card = if b < 2 { DECLINES_CHARGES } else { VISA };
        tokens.push(
            system
                .bind_direct(&format!("mixed-{round}-{b}"), card)
                .await?,
        );
    }
    let tokens = Arc::new(tokens);
    let slots = Arc::new(Semaphore::new(256));
    let client = system.payment_client().await?;
    let mut tasks = Vec::new();
    for n in 0..2_000 {
        let (mut c, tokens, slots) = (client.clone(), tokens.clone(), slots.clone());
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await.expect("semaphore");
            c.pay(pb::PayRequest {
                binding_token: tokens[n % BINDINGS].clone(),
                merchant_user_id: format!("mixed-{round}-{}", n % BINDINGS),
                merchant_order_id: format!("mixed-o-{round}-{n}"),
                amount: paybind_tests::cny(1),
                description: String::new(),
                idempotency_key: format!("mixed-{round}-{n}"),
            })
            .await
        }));
    }
    let mut errors = BTreeMap::<String, usize>::new();
    for t in tasks {
        if let Err(s) = t.await? {
            *errors.entry(format!("{:?}", s.code())).or_default() += 1;
        }
    }
    anyhow::ensure!(
        errors.is_empty(),
        "mixed declines #{}: errors {errors:?}",
        round + 1
    );
    println!(
        "  mixed declines #{}: 2000 payments, 256 in flight, 0 errors",
        round + 1
    );
    Ok(())
}

async fn idle_flood(system: &mut System, rounds: usize) -> anyhow::Result<()> {
    const FD_LIMIT: u64 = 1_024;
    const FLOOD: usize = 1_124;
    system.kill_payment();
    system.start_payment(Some(FD_LIMIT)).await?;
    let pid = system.payment_pid().context("payment-svc")?;
    let endpoints = system.endpoints();
    let probe = || {
        let client = endpoints.payment_client();
        async move {
            client?
                .list_bindings(pb::ListBindingsRequest {
                    merchant_user_id: "probe".into(),
                    ..Default::default()
                })
                .await?;
            anyhow::Ok(())
        }
    };
    probe().await?;
    let baseline = rss_mb(pid);
    let mut afters = Vec::new();
    for round in 0..rounds {
        let mut flood = Vec::with_capacity(FLOOD);
        for _ in 0..FLOOD {
            match tokio::net::TcpStream::connect(("127.0.0.1", system.payment_port)).await {
                Ok(c) => flood.push(c),
                Err(e) => anyhow::bail!("the flood could not connect: {e}"),
            }
        }
        let mut answered = 0;
        for _ in 0..28 {
            if tokio::time::timeout(Duration::from_secs(5), probe())
                .await
                .is_ok_and(|r| r.is_ok())
            {
                answered += 1;
            }
        }
        let peak = rss_mb(pid);
        drop(flood);
        // The allocator gives freed memory back within its decay time.
        let mut after = rss_mb(pid);
        let settle = Instant::now() + Duration::from_secs(20);
        while after > baseline + 2.0 && Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(500)).await;
            after = rss_mb(pid);
        }
        afters.push(after);
        println!(
            "  idle flood #{}: {FLOOD} connections under a {FD_LIMIT} open-files limit; {answered} of 28 new clients answered; \
             RSS {baseline:.1} MB before, {peak:.1} MB in the flood, {after:.1} MB after",
            round + 1
        );
        anyhow::ensure!(answered == 28, "new clients were locked out");
        anyhow::ensure!(
            after <= baseline + 4.0,
            "memory did not come back: {baseline:.1} MB -> {after:.1} MB"
        );
    }
    let (first, last) = (afters[0], afters[afters.len() - 1]);
    anyhow::ensure!(
        last <= first + 2.0,
        "memory grows from flood to flood: {afters:?}"
    );
    system.kill_payment();
    system.start_payment(None).await
}

async fn run(backend: Backend, args: &Args) -> anyhow::Result<()> {
    println!("== {backend:?}");
    let mut system = System::start(SystemOptions {
        backend,
        postgres: args.postgres.clone(),
        db_connections: 8,
        daily_limit: paybind_shared::money::MAX_AMOUNT_MINOR,
        env: Vec::new(),
    })
    .await?;
    let shoppers = args.workers.div_ceil(2);
    let mut tokens = Vec::new();
    for w in 0..shoppers {
        tokens.push(system.bind_direct(&format!("direct-{w}"), VISA).await?);
        system.bind_shopper(&format!("shopper-{w}"), VISA).await?;
    }
    let tokens = Arc::new(tokens);
    let load_for = Duration::from_secs_f64(args.load_seconds);

    // kill -9 of payment-svc under load, several times.
    for round in 0..args.rounds {
        let load = Load::start(
            system.endpoints(),
            tokens.clone(),
            args.workers,
            &format!("kp{round}"),
        );
        tokio::time::sleep(load_for).await;
        system.kill_payment();
        let ledger = load.stop().await;
        system.start_payment(None).await?;
        recover_and_check(
            &system,
            ledger,
            &format!("kill -9 payment-svc #{}", round + 1),
        )
        .await?;
    }
    // kill -9 of merchant-svc under load.
    {
        let load = Load::start(system.endpoints(), tokens.clone(), args.workers, "km");
        tokio::time::sleep(load_for).await;
        system.kill_merchant();
        let ledger = load.stop().await;
        system.start_merchant().await?;
        recover_and_check(&system, ledger, "kill -9 merchant-svc").await?;
    }
    // SIGSTOP of payment-svc for 3 s.
    {
        let load = Load::start(system.endpoints(), tokens.clone(), args.workers, "st");
        tokio::time::sleep(load_for / 2).await;
        let pid = system.payment_pid().context("payment-svc")?;
        signal(pid, "STOP")?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        signal(pid, "CONT")?;
        tokio::time::sleep(load_for / 2).await;
        let ledger = load.stop().await;
        recover_and_check(&system, ledger, "SIGSTOP payment-svc 3 s").await?;
    }
    // Every database connection of both services cut, again and again.
    if backend == Backend::Postgres {
        let load = Load::start(system.endpoints(), tokens.clone(), args.workers, "cut");
        let until = Instant::now() + Duration::from_secs(3);
        let mut admin = sqlx::PgConnection::connect(&args.postgres).await?;
        let names: Vec<String> = [&system.payment_db, &system.merchant_db]
            .iter()
            .map(|u| u.rsplit('/').next().unwrap_or_default().to_owned())
            .collect();
        while Instant::now() < until {
            for name in &names {
                admin
                    .execute(
                        format!(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                             WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                        )
                        .as_str(),
                    )
                    .await?;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let ledger = load.stop().await;
        recover_and_check(&system, ledger, "database connections cut for 3 s").await?;
    }
    for round in 0..args.rounds {
        mixed_declines(&system, round).await?;
    }
    idle_flood(&mut system, args.rounds.clamp(1, 3)).await?;
    system.stop().await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let backends = match args.backend.as_str() {
        "sqlite" => vec![Backend::Sqlite],
        "postgres" => vec![Backend::Postgres],
        "both" => vec![Backend::Sqlite, Backend::Postgres],
        other => anyhow::bail!("--backend must be sqlite, postgres or both, not {other}"),
    };
    let started = Instant::now();
    for backend in backends {
        run(backend, &args).await?;
    }
    println!(
        "fault suite passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

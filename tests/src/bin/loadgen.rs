//! paybind's load generator and benchmark.
//!
//! Starts payment-svc and merchant-svc as their own processes (their binaries
//! beside this one: build them first), on SQLite or PostgreSQL, with fresh
//! databases and certificates; binds one card per worker; then, each for a
//! bounded time:
//! 1. `echo`: a bare RPC over the same mTLS setup (grpc.health.v1 Check on
//!    payment-svc, no database) — the ceiling of this machine;
//! 2. `pay`: N concurrent `Pay` calls straight to payment-svc;
//! 3. `checkout`: N concurrent checkouts of bound users through merchant-svc
//!    (merchant → payment → acquirer → both databases);
//! 4. both again at half of the throughput just measured, for latency at
//!    half of peak load;
//! 5. `pay@1` and `checkout@1`: one request at a time, the latency of a
//!    quiet system (each after payment-svc has pushed the events the loaded
//!    phases left to push).
//!
//! Before the phases, payment-svc's database is filled up to `--bindings`
//! bindings (default 1,000) so that throughput can be compared from a small
//! institution to a large one; each worker pays with a card of its own (the
//! simulated issuer's load-test range).
//!
//! Prints throughput, p50/p90/p99/max latency, errors by code, each figure
//! also as a ratio to echo, and each service's peak resident memory; as a
//! table and as JSON (`--json FILE`). A benchmark, not a test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Parser;
use paybind_tests::{
    fixtures::load_test_card,
    mpb, pb,
    system::{rss_mb, System, SystemOptions},
    Backend,
};
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

#[derive(Parser, Clone)]
#[command(
    name = "loadgen",
    about = "Benchmarks paybind: echo ceiling, Pay, checkout"
)]
struct Args {
    /// sqlite or postgres.
    #[arg(long, default_value = "sqlite")]
    backend: String,
    /// PostgreSQL server for `--backend postgres` (a fresh database is made).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres: String,
    /// Seconds per phase.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Concurrent requests in flight (one bound card per worker).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Bindings payment-svc holds while the phases run: the workers' own,
    /// and copies of one up to this many (never paid with), so that the
    /// tables and indexes are those of a busy institution.
    #[arg(long, default_value_t = 1_000)]
    bindings: u64,
    /// Merchants paying in the `pay` phases (worker w pays as merchant
    /// w mod M, each with a certificate of its own); checkouts stay the one
    /// shop merchant-svc runs.
    #[arg(long, default_value_t = 1)]
    merchants: usize,
    /// Database connections of each service.
    #[arg(long, default_value_t = 16)]
    db_connections: u32,
    /// Also write the results here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Default, Clone, serde::Serialize)]
struct PhaseResult {
    name: String,
    concurrency: usize,
    target_rps: Option<f64>,
    seconds: f64,
    ok: u64,
    throughput_rps: f64,
    ratio_to_echo: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    errors: BTreeMap<String, u64>,
    payment_rss_mb: f64,
    merchant_rss_mb: f64,
}

#[derive(serde::Serialize)]
struct Report {
    machine: String,
    backend: String,
    concurrency: usize,
    bindings: u64,
    merchants: usize,
    phases: Vec<PhaseResult>,
}

type Call = Arc<
    dyn Fn(usize, u64) -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync,
>;

/// Runs `call` from `workers` tasks for `seconds`; with `target_rps`, paced
/// (open loop) to that total rate.
async fn phase(
    name: &str,
    workers: usize,
    seconds: f64,
    target_rps: Option<f64>,
    call: Call,
    pids: (u32, u32),
) -> PhaseResult {
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
    let errors = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (stop, latencies, errors, call) = (
            stop.clone(),
            latencies.clone(),
            errors.clone(),
            call.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut local = Vec::new();
            let mut n = 0u64;
            let pace = target_rps.map(|r| Duration::from_secs_f64(workers as f64 / r));
            let mut next = Instant::now()
                + pace
                    .map(|p| p.mul_f64(w as f64 / workers as f64))
                    .unwrap_or_default();
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                if let Some(p) = pace {
                    tokio::time::sleep_until(next.into()).await;
                    next += p;
                }
                let t = Instant::now();
                match call(w, n).await {
                    Ok(()) => local.push(t.elapsed().as_micros() as u32),
                    Err(code) => *errors.lock().unwrap().entry(code).or_default() += 1,
                }
                n += 1;
            }
            latencies.lock().unwrap().extend(local);
        }));
    }
    let (mut peak_payment, mut peak_merchant) = (0.0f64, 0.0f64);
    while Instant::now() < deadline {
        peak_payment = peak_payment.max(rss_mb(pids.0));
        peak_merchant = peak_merchant.max(rss_mb(pids.1));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut lat = std::mem::take(&mut *latencies.lock().unwrap());
    let errors = std::mem::take(&mut *errors.lock().unwrap());
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        f64::from(lat[i]) / 1000.0
    };
    PhaseResult {
        name: name.to_owned(),
        concurrency: workers,
        target_rps,
        seconds: elapsed,
        ok: lat.len() as u64,
        throughput_rps: lat.len() as f64 / elapsed,
        ratio_to_echo: 0.0,
        p50_ms: pct(0.50),
        p90_ms: pct(0.90),
        p99_ms: pct(0.99),
        max_ms: lat.last().map(|m| f64::from(*m) / 1000.0).unwrap_or(0.0),
        errors,
        payment_rss_mb: peak_payment,
        merchant_rss_mb: peak_merchant,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let backend = match args.backend.as_str() {
        "sqlite" => Backend::Sqlite,
        "postgres" => Backend::Postgres,
        other => anyhow::bail!("--backend must be sqlite or postgres, not {other}"),
    };
    let system = System::start(SystemOptions {
        backend,
        postgres: args.postgres.clone(),
        db_connections: args.db_connections,
        daily_limit: paybind_shared::money::MAX_AMOUNT_MINOR,
        env: Vec::new(),
    })
    .await?;
    let pids = (
        system.payment_pid().context("payment-svc")?,
        system.merchant_pid().context("merchant-svc")?,
    );
    let n = args.concurrency.max(1);
    let channels = n.clamp(1, 8);
    let merchants = args.merchants.clamp(1, n);
    // The shop's own certificate first, then one more merchant each.
    let mut merchant_tls = vec![system.shop_tls.clone()];
    for m in 1..merchants {
        merchant_tls.push(system.add_merchant(&format!("load-shop-{}", m + 1)).await?);
    }
    // Per merchant, its share of the channels (at least one).
    let mut pay_clients = Vec::new();
    for tls in &merchant_tls {
        let mut own = Vec::new();
        for _ in 0..(channels / merchants).max(1) {
            own.push(pb::binding_service_client::BindingServiceClient::new(
                system.channel(tls, system.payment_port).await?,
            ));
        }
        pay_clients.push(own);
    }
    let mut shop_clients = Vec::new();
    for _ in 0..channels {
        shop_clients.push(system.shop_client().await?);
    }
    let health = HealthClient::new(
        system
            .channel(&system.shop_tls, system.payment_port)
            .await?,
    );

    // One card of its own per worker, bound directly and through the shop
    // (as many shoppers, each with a daily limit of their own).
    eprintln!("binding {n} cards at payment-svc and {n} through merchant-svc ...");
    let mut tokens = Vec::new();
    for w in 0..n {
        let w32 = u32::try_from(w)?;
        tokens.push(
            system
                .bind_direct_as(
                    &merchant_tls[w % merchants],
                    &format!("direct-{w}"),
                    &load_test_card(2 * w32),
                )
                .await?,
        );
        system
            .bind_shopper(&format!("shopper-{w}"), &load_test_card(2 * w32 + 1))
            .await?;
    }
    eprintln!("preloading bindings up to {} ...", args.bindings);
    let bindings = system.preload_bindings(args.bindings).await?;
    let tokens = Arc::new(tokens);
    let run_id = paybind_shared::ids::new_id("r")[2..10].to_owned();

    let code_of = |s: tonic::Status| {
        paybind_shared::grpc::reason_of(&s).unwrap_or_else(|| format!("{:?}", s.code()))
    };
    let echo: Call = {
        let health = health.clone();
        Arc::new(move |_, _| {
            let mut h = health.clone();
            Box::pin(async move {
                h.check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(|_| ())
                .map_err(code_of)
            })
        })
    };
    let pay: Call = {
        let (clients, tokens, run_id) = (pay_clients.clone(), tokens.clone(), run_id.clone());
        Arc::new(move |w, i| {
            let own = &clients[w % clients.len()];
            let mut c = own[(w / clients.len()) % own.len()].clone();
            let token = tokens[w].clone();
            let run_id = run_id.clone();
            Box::pin(async move {
                let r = c
                    .pay(pb::PayRequest {
                        binding_token: token,
                        merchant_user_id: format!("direct-{w}"),
                        merchant_order_id: format!("o-{w}-{i}"),
                        amount: Some(pb::Money {
                            amount_minor: 1,
                            currency: "CNY".into(),
                        }),
                        description: String::new(),
                        idempotency_key: format!("{run_id}-{w}-{i}-{}", rand::random::<u32>()),
                    })
                    .await
                    .map_err(code_of)?
                    .into_inner();
                match r.payment.map(|p| p.status) {
                    Some(s) if s == pb::PaymentStatus::Succeeded as i32 => Ok(()),
                    other => Err(format!("payment status {other:?}")),
                }
            })
        })
    };
    let checkout: Call = {
        let (clients, run_id) = (shop_clients.clone(), run_id.clone());
        Arc::new(move |w, i| {
            let mut m = clients[w % clients.len()].clone();
            let run_id = run_id.clone();
            Box::pin(async move {
                let order = m
                    .checkout(mpb::CheckoutRequest {
                        user_id: format!("shopper-{w}"),
                        amount: Some(pb::Money {
                            amount_minor: 1,
                            currency: "CNY".into(),
                        }),
                        description: String::new(),
                        presentation: 0,
                        return_url: String::new(),
                        idempotency_key: format!("{run_id}-{w}-{i}-{}", rand::random::<u32>()),
                    })
                    .await
                    .map_err(code_of)?
                    .into_inner()
                    .order
                    .context("order")
                    .map_err(|e| e.to_string())?;
                if order.status == mpb::OrderStatus::Paid as i32 {
                    Ok(())
                } else {
                    Err(format!("order status {}", order.status))
                }
            })
        })
    };

    let secs = args.seconds;
    eprintln!("running phases of {secs} s at concurrency {n} ...");
    let mut phases = Vec::new();
    let echo_r = phase("echo", n, secs, None, echo, pids).await;
    let pay_r = phase("pay", n, secs, None, pay.clone(), pids).await;
    let checkout_r = phase("checkout", n, secs, None, checkout.clone(), pids).await;
    let pay_half = phase(
        "pay@half",
        n,
        secs,
        Some(pay_r.throughput_rps / 2.0),
        pay.clone(),
        pids,
    )
    .await;
    let checkout_half = phase(
        "checkout@half",
        n,
        secs,
        Some(checkout_r.throughput_rps / 2.0),
        checkout.clone(),
        pids,
    )
    .await;
    // One request at a time: the latency of an unloaded system, once
    // payment-svc has pushed what the loaded phases left to push.
    drain_deliveries(&system).await?;
    let pay_alone = phase("pay@1", 1, secs, None, pay, pids).await;
    drain_deliveries(&system).await?;
    let checkout_alone = phase("checkout@1", 1, secs, None, checkout, pids).await;
    let ceiling = echo_r.throughput_rps.max(1e-9);
    for mut p in [
        echo_r,
        pay_r,
        checkout_r,
        pay_half,
        checkout_half,
        pay_alone,
        checkout_alone,
    ] {
        p.ratio_to_echo = p.throughput_rps / ceiling;
        phases.push(p);
    }
    let report = Report {
        machine: format!(
            "{} cores, {}",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(
                    |s| s.lines().find(|l| l.starts_with("model name")).map(|l| l
                        .split(':')
                        .nth(1)
                        .unwrap_or("")
                        .trim()
                        .to_owned())
                )
                .unwrap_or_default()
        ),
        backend: args.backend.clone(),
        concurrency: n,
        bindings,
        merchants,
        phases,
    };

    println!(
        "paybind benchmark — backend {}, concurrency {}, {} s per phase, {} bindings, {} merchants",
        report.backend, n, secs, report.bindings, report.merchants
    );
    println!("machine: {}", report.machine);
    println!(
        "{:<14} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}  errors",
        "phase", "req/s", "x echo", "p50 ms", "p90 ms", "p99 ms", "max ms", "pay MB", "shop MB"
    );
    for p in &report.phases {
        println!(
            "{:<14} {:>10.0} {:>7.1}% {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.1} {:>9.1}  {:?}",
            p.name,
            p.throughput_rps,
            p.ratio_to_echo * 100.0,
            p.p50_ms,
            p.p90_ms,
            p.p99_ms,
            p.max_ms,
            p.payment_rss_mb,
            p.merchant_rss_mb,
            p.errors
        );
    }
    println!("{}", against_targets(&report.phases));
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.json {
        std::fs::write(path, &json)?;
    }
    println!("{json}");
    system.stop().await?;
    for p in &report.phases {
        anyhow::ensure!(
            p.ok > 0,
            "phase {} completed no request (errors: {:?})",
            p.name,
            p.errors
        );
    }
    Ok(())
}

/// Waits (a minute at most) until none of the shop's events is still
/// waiting to be pushed to merchant-svc (the other merchants have no
/// notification endpoint).
async fn drain_deliveries(system: &System) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut events = pb::event_service_client::EventServiceClient::new(
        system
            .channel(&system.shop_tls, system.payment_port)
            .await?,
    );
    loop {
        let pending = events
            .list_deliveries(pb::ListDeliveriesRequest {
                status: pb::DeliveryStatus::Pending as i32,
                after_cursor: String::new(),
                page_size: 1,
            })
            .await?
            .into_inner()
            .deliveries;
        if pending.is_empty() {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "payment-svc still has events to push after a minute"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "deliveries drained in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One line: this run against issue 12's targets (ratios to echo, p99 at
/// half of peak, resident memory).
fn against_targets(phases: &[PhaseResult]) -> String {
    let find = |name: &str| phases.iter().find(|p| p.name == name);
    let mark = |ok: bool| if ok { "met" } else { "MISSED" };
    let mut parts = Vec::new();
    for (name, ratio) in [("pay", 0.12), ("checkout", 0.07)] {
        if let Some(p) = find(name) {
            parts.push(format!(
                "{name} {:.1} % of echo (>= {:.0} %: {})",
                p.ratio_to_echo * 100.0,
                ratio * 100.0,
                mark(p.ratio_to_echo >= ratio)
            ));
        }
    }
    for (name, ms) in [("pay@half", 10.0), ("checkout@half", 20.0)] {
        if let Some(p) = find(name) {
            parts.push(format!(
                "{name} p99 {:.1} ms (<= {ms} ms: {})",
                p.p99_ms,
                mark(p.p99_ms <= ms)
            ));
        }
    }
    if let Some(p) = find("checkout@1") {
        parts.push(format!(
            "checkout@1 p50 {:.2} ms (<= 1.5 ms: {})",
            p.p50_ms,
            mark(p.p50_ms <= 1.5)
        ));
    }
    let rss = phases
        .iter()
        .map(|p| p.payment_rss_mb.max(p.merchant_rss_mb))
        .fold(0.0, f64::max);
    parts.push(format!(
        "RSS {rss:.0} MB (<= 100 MB: {})",
        mark(rss <= 100.0)
    ));
    format!("targets: {}", parts.join("; "))
}

//! Watching paybind: both services run as their own processes (as an
//! operator runs them), exporting traces over OTLP to an in-process
//! receiver and serving Prometheus metrics.
//!
//! - One checkout is one trace across both services: the operator's
//!   `traceparent` → merchant-svc's server span → its client span → over
//!   gRPC → payment-svc's server span → its store and acquirer spans, each
//!   with the right parent.
//! - Spans are batched (a minute's delay here) and flushed on SIGTERM.
//! - Health checks make no spans.
//! - Nothing the shopper typed or was sent, nor the binding token, is in
//!   any byte exported, nor in any metric.
//! - `/metrics` parses, and its counters move by exactly one per payment.
//! - JSON logs carry the trace id.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashMap;

use paybind_proto::{merchant::v1 as mpb, payment::v1 as pb};
use paybind_tests::{
    fixtures::{ID_NUMBER, PHONE, VISA},
    otlp::{ReceivedSpan, Receiver},
    system::{last_code, System, SystemOptions},
    Backend,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SHOPPER: &str = "watched-shopper";
const SERVER: i32 = 2;
const CLIENT: i32 = 3;

/// An HTTP/1.1 GET with `headers`: the response's head and body.
async fn get(port: u16, path: &str, headers: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("port open");
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (head.to_owned(), body.to_owned())
}

/// `GET /metrics`, parsed.
async fn scrape(port: u16) -> (String, prometheus_parse::Scrape) {
    let (head, body) = get(port, "/metrics", "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    assert!(
        body.ends_with("# EOF\n"),
        "an OpenMetrics exposition ends so"
    );
    let scrape =
        prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    (body, scrape)
}

/// The value of the sample `name` whose labels include `labels` (0 if none).
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

fn rpc_count(scrape: &prometheus_parse::Scrape, method: &str) -> f64 {
    value(
        scrape,
        "paybind_rpc_server_duration_seconds_count",
        &[("method", method), ("code", "OK")],
    )
}

fn succeeded_payments(scrape: &prometheus_parse::Scrape) -> f64 {
    value(
        scrape,
        "paybind_payments_total",
        &[("status", "succeeded"), ("flow", "pay")],
    )
}

/// The one span of `trace` named `name` of `kind` from `service`.
fn span<'a>(trace: &'a [ReceivedSpan], service: &str, name: &str, kind: i32) -> &'a ReceivedSpan {
    let found: Vec<_> = trace
        .iter()
        .filter(|s| s.service_name == service && s.name == name && s.kind == kind)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {name} span from {service} in {:#?}",
        trace
            .iter()
            .map(|s| (&s.service_name, &s.name))
            .collect::<Vec<_>>()
    );
    found[0]
}

/// Whether `child` descends from `ancestor` within `trace`.
fn descends(trace: &[ReceivedSpan], child: &ReceivedSpan, ancestor: &ReceivedSpan) -> bool {
    let by_id: HashMap<&str, &ReceivedSpan> =
        trace.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let mut at = child;
    for _ in 0..32 {
        if at.parent_span_id == ancestor.span_id {
            return true;
        }
        match by_id.get(at.parent_span_id.as_str()) {
            Some(parent) => at = parent,
            None => return false,
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_checkout_is_one_trace_across_both_services_and_counts_once() {
    let receiver = Receiver::start("127.0.0.1:0".parse().unwrap())
        .await
        .expect("receiver");
    let env = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    let mut system = System::start(SystemOptions {
        backend: Backend::Sqlite,
        postgres: String::new(),
        db_connections: 4,
        daily_limit: 200_000,
        env: vec![
            env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint()),
            // Nothing leaves before the services stop: the flush on
            // SIGTERM is what delivers the spans.
            env("OTEL_BSP_SCHEDULE_DELAY", "60000"),
            env("LOG_FORMAT", "json"),
            env("RUST_LOG", "info"),
        ],
    })
    .await
    .expect("system");

    // A shopper with a card on file (through merchant-svc, as a shop does).
    system.bind_shopper(SHOPPER, VISA).await.expect("bound");
    let code = last_code(&system.outbox).expect("the code sent");
    let token = system
        .payment_client()
        .await
        .unwrap()
        .list_bindings(pb::ListBindingsRequest {
            merchant_user_id: SHOPPER.into(),
            ..Default::default()
        })
        .await
        .expect("bindings")
        .into_inner()
        .bindings[0]
        .binding_token
        .clone();

    let (_, payment_before) = scrape(system.payment_metrics_port).await;
    let (_, merchant_before) = scrape(system.merchant_metrics_port).await;

    // The operator's call comes with a trace of its own.
    let trace_id = format!("{:032x}", rand::random::<u128>() | 1);
    let caller_span = format!("{:016x}", rand::random::<u64>() | 1);
    let mut checkout = tonic::Request::new(mpb::CheckoutRequest {
        user_id: SHOPPER.into(),
        amount: Some(pb::Money {
            amount_minor: 1999,
            currency: "CNY".into(),
        }),
        description: "Green tea".into(),
        idempotency_key: "watched-checkout-1".into(),
        ..Default::default()
    });
    checkout.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{caller_span}-01").parse().unwrap(),
    );
    let order = system
        .shop_client()
        .await
        .unwrap()
        .checkout(checkout)
        .await
        .expect("checkout")
        .into_inner()
        .order
        .expect("order");
    assert_eq!(order.status, mpb::OrderStatus::Paid as i32, "{order:?}");

    // Metrics: one more payment, one more Checkout and one more Pay.
    let (payment_text, payment_after) = scrape(system.payment_metrics_port).await;
    let (merchant_text, merchant_after) = scrape(system.merchant_metrics_port).await;
    assert_eq!(
        succeeded_payments(&payment_after) - succeeded_payments(&payment_before),
        1.0
    );
    assert_eq!(
        rpc_count(&payment_after, "paybind.payment.v1.BindingService/Pay")
            - rpc_count(&payment_before, "paybind.payment.v1.BindingService/Pay"),
        1.0
    );
    assert_eq!(
        rpc_count(
            &merchant_after,
            "paybind.merchant.v1.MerchantService/Checkout"
        ) - rpc_count(
            &merchant_before,
            "paybind.merchant.v1.MerchantService/Checkout"
        ),
        1.0
    );
    assert!(
        value(
            &payment_after,
            "paybind_bind_sessions_total",
            &[("kind", "bind"), ("outcome", "bound")]
        ) >= 1.0
    );
    assert!(
        value(
            &payment_after,
            "paybind_group_commit_batch_size_count",
            &[("writer", "payment_reservations")]
        ) >= 1.0
    );
    assert!(
        value(
            &merchant_after,
            "paybind_group_commit_batch_size_count",
            &[("writer", "order_inserts")]
        ) >= 1.0
    );
    for scrape in [&payment_after, &merchant_after] {
        assert!(value(scrape, "paybind_db_pool_connections", &[("state", "max")]) >= 1.0);
    }

    // Health checks, as an orchestrator makes them: no spans.
    for port in [system.payment_port, system.merchant_port] {
        let tls = if port == system.payment_port {
            &system.shop_tls
        } else {
            &system.operator_tls
        };
        let channel = system.channel(tls, port).await.unwrap();
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .expect("health");
    }

    // A shopper's page request continues the browser's trace too, and is
    // named by its route, not its path.
    let page_trace = format!("{:032x}", rand::random::<u128>() | 1);
    let (head, _) = get(
        system.storefront_port,
        "/",
        &format!("traceparent: 00-{page_trace}-{caller_span}-01\r\n"),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // ... and as the containers' health checks make them.
    for service in ["payment-svc", "merchant-svc"] {
        assert!(
            system.health_check(service).unwrap(),
            "{service} is healthy"
        );
    }

    // Nothing exported yet (a minute's batching); SIGTERM flushes.
    system.terminate().expect("both stop on SIGTERM");
    for service in ["payment-svc", "merchant-svc"] {
        assert!(!system.health_check(service).unwrap(), "{service} is gone");
    }
    let spans = receiver.collected.spans();
    let trace: Vec<ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == trace_id)
        .cloned()
        .collect();

    let checkout = span(
        &trace,
        "merchant-svc",
        "paybind.merchant.v1.MerchantService/Checkout",
        SERVER,
    );
    assert_eq!(
        checkout.parent_span_id, caller_span,
        "continues the caller's trace"
    );
    let pay_call = span(
        &trace,
        "merchant-svc",
        "paybind.payment.v1.BindingService/Pay",
        CLIENT,
    );
    assert!(descends(&trace, pay_call, checkout));
    let pay = span(
        &trace,
        "payment-svc",
        "paybind.payment.v1.BindingService/Pay",
        SERVER,
    );
    assert_eq!(pay.parent_span_id, pay_call.span_id, "across the gRPC hop");
    assert!(pay
        .attributes
        .contains(&("paybind.caller".to_owned(), "load-shop".to_owned())));
    assert!(pay
        .attributes
        .contains(&("rpc.grpc.status_code".to_owned(), "0".to_owned())));
    for name in [
        "store.reserve_payment",
        "acquirer.charge",
        "store.record_payment_outcome",
    ] {
        let found = trace
            .iter()
            .find(|s| s.service_name == "payment-svc" && s.name == name)
            .unwrap_or_else(|| panic!("a {name} span"));
        assert!(descends(&trace, found, pay), "{name} is within Pay");
    }
    assert!(
        spans.iter().all(|s| !s.name.contains("Health")),
        "health checks make no spans"
    );
    let page: Vec<_> = spans.iter().filter(|s| s.trace_id == page_trace).collect();
    assert_eq!(page.len(), 1, "{page:?}");
    assert_eq!(
        (
            page[0].name.as_str(),
            page[0].service_name.as_str(),
            page[0].kind
        ),
        ("GET /", "merchant-svc", SERVER)
    );
    assert_eq!(page[0].parent_span_id, caller_span);

    // No secret in any byte exported, any span name or attribute, or any
    // metric.
    let exported = receiver.collected.raw_bytes();
    let secrets = [
        VISA,
        "4242 4242 4242 4242",
        ID_NUMBER,
        PHONE,
        PHONE.trim_start_matches("+86"),
        &code,
        &token,
    ];
    for secret in secrets {
        assert!(
            !exported
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "an exported span carries a secret ({} bytes)",
            secret.len()
        );
        for text in [&payment_text, &merchant_text] {
            assert!(!text.contains(secret), "a metric carries a secret");
        }
    }
    for s in &spans {
        for (key, _) in &s.attributes {
            let last = key.rsplit('.').next().unwrap_or(key);
            assert!(
                ![
                    "cvv",
                    "number",
                    "card_number",
                    "id_number",
                    "phone",
                    "code",
                    "token",
                    "binding_token"
                ]
                .contains(&last),
                "attribute {key} should not be exported"
            );
        }
    }

    // JSON logs carry the trace id, on both sides.
    for service in ["payment-svc", "merchant-svc"] {
        let log =
            std::fs::read_to_string(system.dir.path().join(format!("{service}.log"))).expect("log");
        let carrying: Vec<serde_json::Value> = log
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|v: &serde_json::Value| v["span"]["trace_id"] == trace_id.as_str())
            .collect();
        assert!(
            !carrying.is_empty(),
            "{service} logged within the checkout with its trace id: {}",
            log.lines().rev().take(6).collect::<Vec<_>>().join("\n")
        );
    }
    system.stop().await.expect("stop");
}

//! The transport: only clients with a certificate from paybind's CA get in,
//! and the servers answer health checks and grpcurl through reflection.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::{process::Command, time::Duration};

use paybind_tests::{pb, pki, Backend, Stack, SHOP_A};
use tonic::transport::{ClientTlsConfig, Endpoint};

async fn call_bind(tls: ClientTlsConfig, port: u16) -> anyhow::Result<()> {
    let channel = Endpoint::from_shared(format!("https://localhost:{port}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await?;
    let mut client = pb::binding_service_client::BindingServiceClient::new(channel);
    client
        .list_bindings(pb::ListBindingsRequest {
            merchant_user_id: "x".into(),
            ..Default::default()
        })
        .await?;
    Ok(())
}

#[tokio::test]
async fn clients_without_a_certificate_from_the_ca_are_refused() -> anyhow::Result<()> {
    let stack = Stack::start(Backend::Sqlite)
        .await?
        .expect("sqlite always runs");
    let port = stack.addr.port();
    let ca = tonic::transport::Certificate::from_pem(std::fs::read(pki().dir.join("ca.pem"))?);

    // The registered merchant's own certificate works.
    call_bind(pki().client_files(SHOP_A).client_config("localhost")?, port).await?;

    // No client certificate at all.
    let anonymous = ClientTlsConfig::new()
        .ca_certificate(ca.clone())
        .domain_name("localhost");
    assert!(
        call_bind(anonymous, port).await.is_err(),
        "no certificate must be refused"
    );

    // A certificate naming the same merchant, signed by another CA.
    let other = tempfile::tempdir()?;
    let forged = paybind_shared::tls::dev::ensure_merchant(other.path(), SHOP_A)?;
    let identity = tonic::transport::Identity::from_pem(
        std::fs::read(&forged.cert)?,
        std::fs::read(&forged.key)?,
    );
    let forged = ClientTlsConfig::new()
        .ca_certificate(ca)
        .identity(identity)
        .domain_name("localhost");
    assert!(
        call_bind(forged, port).await.is_err(),
        "a foreign CA must be refused"
    );

    stack.stop().await
}

fn grpcurl_available() -> bool {
    let found = Command::new("grpcurl").arg("-version").output().is_ok();
    if !found {
        assert!(
            std::env::var("PAYBIND_REQUIRE_GRPCURL").as_deref() != Ok("1"),
            "grpcurl is required (PAYBIND_REQUIRE_GRPCURL=1) but not on PATH"
        );
        eprintln!("SKIPPED: grpcurl tests: grpcurl is not on PATH (.ci/run installs it)");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_describes_and_calls_through_reflection() -> anyhow::Result<()> {
    if !grpcurl_available() {
        return Ok(());
    }
    let stack = Stack::start(Backend::Sqlite)
        .await?
        .expect("sqlite always runs");
    let files = pki().client_files(SHOP_A);
    let target = format!("localhost:{}", stack.addr.port());
    let grpcurl = |args: &[&str]| -> anyhow::Result<(bool, String)> {
        let out = Command::new("grpcurl")
            .arg("-cacert")
            .arg(&files.ca_cert)
            .arg("-cert")
            .arg(&files.cert)
            .arg("-key")
            .arg(&files.key)
            .args(args)
            .output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((out.status.success(), text))
    };
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        grpcurl(&refs)
    };

    let (ok, services) = run(vec![target.clone(), "list".into()])?;
    assert!(ok, "{services}");
    assert!(
        services.contains("paybind.payment.v1.BindingService"),
        "{services}"
    );
    assert!(services.contains("grpc.health.v1.Health"), "{services}");

    let (ok, described) = run(vec![
        target.clone(),
        "describe".into(),
        "paybind.payment.v1.PayRequest".into(),
    ])?;
    assert!(ok, "{described}");
    assert!(described.contains("binding_token"), "{described}");

    let (ok, health) = run(vec![target.clone(), "grpc.health.v1.Health/Check".into()])?;
    assert!(ok && health.contains("SERVING"), "{health}");

    let bind = r#"{"merchant_user_id":"alice","presentation":"PRESENTATION_REDIRECT","return_url":"https://shop.example/bind/return","idempotency_key":"grpcurl-1"}"#;
    let (ok, session) = run(vec![
        "-d".into(),
        bind.into(),
        target.clone(),
        "paybind.payment.v1.BindingService/Bind".into(),
    ])?;
    assert!(ok, "{session}");
    let json: serde_json::Value = serde_json::from_str(&session)?;
    assert_eq!(json["session"]["status"], "BIND_SESSION_STATUS_OPEN");

    // Errors come with their machine-readable reason, readable by grpcurl.
    let pay = r#"{"binding_token":"pbt_nope","merchant_user_id":"alice","merchant_order_id":"o1","amount":{"amount_minor":"100","currency":"CNY"},"idempotency_key":"k1"}"#;
    let (ok, error) = run(vec![
        "-d".into(),
        pay.into(),
        target.clone(),
        "paybind.payment.v1.BindingService/Pay".into(),
    ])?;
    assert!(!ok);
    assert!(
        error.contains("NotFound") && error.contains("TOKEN_NOT_FOUND"),
        "{error}"
    );

    // Without a client certificate grpcurl gets nowhere.
    let out = Command::new("grpcurl")
        .arg("-cacert")
        .arg(&files.ca_cert)
        .args([target.as_str(), "list"])
        .output()?;
    assert!(
        !out.status.success(),
        "a call without a client certificate must fail"
    );

    stack.stop().await
}

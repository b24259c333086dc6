//! Merchant identities that can be stopped. A merchant is the name in its
//! certificate's SAN URI and a certificate registered for it by fingerprint:
//! another certificate the same CA signed for the same name, or one that
//! carries the name only as its CN, is refused. A merchant disabled, or a
//! certificate rotated out or revoked, is refused on every replica by the
//! time the admin command returns — on connections already open too.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::{path::Path, time::Duration};

use paybind_shared::tls::{dev, PeerCertificate, TlsFiles};
use paybind_tests::{pb, pki, reason, Stack, SHOP_A, SHOP_B};
use payment_svc::admin::MerchantCommand;
use tonic::{
    transport::{Channel, Endpoint},
    Code,
};

type R = anyhow::Result<()>;
type Client = pb::binding_service_client::BindingServiceClient<Channel>;

paybind_tests::on_both_backends!(with_merchant = false;
    only_a_registered_certificate_speaks_for_its_merchant,
    a_disabled_merchant_is_refused_at_once_on_every_replica,
    a_rotated_or_revoked_certificate_is_refused_at_once,
);

/// A folder with the test CA (certificate and key), to issue more
/// certificates from the very CA payment-svc trusts.
fn same_ca() -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    for file in ["ca.pem", "ca-key.pem"] {
        std::fs::copy(pki().dir.join(file), dir.path().join(file))?;
    }
    Ok(dir)
}

async fn client_with(addr: std::net::SocketAddr, files: &TlsFiles) -> anyhow::Result<Client> {
    let channel = Endpoint::from_shared(format!("https://localhost:{}", addr.port()))?
        .tls_config(files.client_config("localhost")?)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    Ok(Client::new(channel))
}

/// One read-only call: what the merchant's certificate gets it.
async fn list(client: &mut Client) -> Result<(), tonic::Status> {
    client
        .list_bindings(pb::ListBindingsRequest {
            merchant_user_id: "anyone".into(),
            ..Default::default()
        })
        .await
        .map(drop)
}

fn assert_refused(result: Result<(), tonic::Status>, code: Code, why: &str) {
    let err = result.expect_err(why);
    assert_eq!(err.code(), code, "{why}: {err:?}");
    let expected = match code {
        Code::PermissionDenied => "MERCHANT_DISABLED",
        _ if why.contains("revoked") => "CERTIFICATE_REVOKED",
        _ => "UNKNOWN_MERCHANT",
    };
    assert_eq!(reason(&err), expected, "{why}");
}

fn fingerprint(cert: &Path) -> String {
    PeerCertificate::from_pem_file(cert)
        .expect("certificate")
        .fingerprint
        .to_string()
}

async fn only_a_registered_certificate_speaks_for_its_merchant(stack: &Stack) -> R {
    let ca = same_ca()?;
    // The registered certificate.
    list(&mut stack.client(SHOP_A).await?).await?;

    // The same CA, the same merchant name in the SAN URI: not registered.
    let second = dev::ensure_merchant_as(ca.path(), SHOP_A, "shop-a-again")?;
    assert_refused(
        list(&mut client_with(stack.addr, &second).await?).await,
        Code::Unauthenticated,
        "a second certificate for the name is not the merchant",
    );
    // The same CA, the merchant's name as CN only (how identity was read
    // before): names nobody.
    let cn_only = dev::ensure_client(ca.path(), SHOP_A)?;
    assert_refused(
        list(&mut client_with(stack.addr, &cn_only).await?).await,
        Code::Unauthenticated,
        "a CN alone names no merchant",
    );
    // SHOP_B's registered certificate speaks for SHOP_B, not for SHOP_A:
    // registering SHOP_A's name on another merchant's certificate fails.
    let b = PeerCertificate::from_pem_file(&pki().client_files(SHOP_B).cert)?;
    let a = payment_svc::store::connect(&stack.payment_db_url(), 1).await?;
    let shop_a = payment_svc::domain::merchants::find(
        a.as_ref(),
        &paybind_shared::ids::MerchantId::parse(SHOP_A)?,
    )
    .await?;
    let err = payment_svc::domain::merchants::rotate(a.as_ref(), &shop_a, &b, Duration::ZERO)
        .await
        .expect_err("SHOP_B's certificate names SHOP_B");
    assert!(err.to_string().contains("names merchant"), "{err}");
    list(&mut stack.client(SHOP_A).await?).await?;
    Ok(())
}

async fn a_disabled_merchant_is_refused_at_once_on_every_replica(stack: &Stack) -> R {
    let replica = stack.start_replica().await?;
    // Connections open, caches warm, on both replicas.
    let mut first = stack.client(SHOP_A).await?;
    let mut second = client_with(replica.addr, &pki().client_files(SHOP_A)).await?;
    let mut other_shop = stack.client(SHOP_B).await?;
    list(&mut first).await?;
    list(&mut second).await?;

    stack
        .admin(MerchantCommand::Disable { id: SHOP_A.into() })
        .await?;
    for (client, which) in [(&mut first, "first replica"), (&mut second, "second")] {
        assert_refused(
            list(client).await,
            Code::PermissionDenied,
            &format!("disabled, on the {which}, on an open connection"),
        );
    }
    list(&mut other_shop).await?;

    stack
        .admin(MerchantCommand::Enable { id: SHOP_A.into() })
        .await?;
    list(&mut first).await?;
    list(&mut second).await?;
    Ok(())
}

async fn a_rotated_or_revoked_certificate_is_refused_at_once(stack: &Stack) -> R {
    let ca = same_ca()?;
    let replica = stack.start_replica().await?;
    let old = pki().client_files(SHOP_A);
    let new = dev::ensure_merchant_as(ca.path(), SHOP_A, "shop-a-next")?;
    let mut old_here = client_with(stack.addr, &old).await?;
    let mut old_there = client_with(replica.addr, &old).await?;
    list(&mut old_here).await?;
    list(&mut old_there).await?;
    // Not registered yet.
    assert_refused(
        list(&mut client_with(stack.addr, &new).await?).await,
        Code::Unauthenticated,
        "unregistered",
    );

    // A rotation with an overlap: both work until it ends.
    stack
        .admin(MerchantCommand::RotateCert {
            id: SHOP_A.into(),
            cert: new.cert.clone(),
            overlap_secs: 3600,
        })
        .await?;
    let mut new_here = client_with(stack.addr, &new).await?;
    list(&mut new_here).await?;
    list(&mut old_here).await?;

    // The old certificate leaked: revoked at once, everywhere.
    stack
        .admin(MerchantCommand::RevokeCert {
            fingerprint: Some(fingerprint(&old.cert)),
            cert: None,
        })
        .await?;
    assert_refused(
        list(&mut old_here).await,
        Code::Unauthenticated,
        "revoked, here",
    );
    assert_refused(
        list(&mut old_there).await,
        Code::Unauthenticated,
        "revoked, on the other replica",
    );
    list(&mut new_here).await?;
    let err = stack
        .admin(MerchantCommand::RevokeCert {
            fingerprint: None,
            cert: Some(old.cert.clone()),
        })
        .await
        .expect_err("revoked already");
    assert!(err.to_string().contains("no certificate in force"), "{err}");

    // A rotation without overlap refuses the previous certificate at once.
    let newest = dev::ensure_merchant_as(ca.path(), SHOP_A, "shop-a-newest")?;
    stack
        .admin(MerchantCommand::RotateCert {
            id: SHOP_A.into(),
            cert: newest.cert.clone(),
            overlap_secs: 0,
        })
        .await?;
    assert_refused(
        list(&mut new_here).await,
        Code::Unauthenticated,
        "revoked by the rotation",
    );
    list(&mut client_with(replica.addr, &newest).await?).await?;
    Ok(())
}

/// Production trusts only a CA of its own: payment-svc refuses to start on
/// the development CA.
#[tokio::test]
async fn production_refuses_the_development_ca() -> R {
    let stack = Stack::start(paybind_tests::Backend::Sqlite)
        .await?
        .expect("sqlite always runs");
    let mut settings = stack.payment_settings().clone();
    settings.environment = paybind_shared::config::Environment::Production;
    settings.grpc.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let err = payment_svc::startup::App::build(settings)
        .await
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("development CA"), "{err:#}");
    stack.stop().await
}

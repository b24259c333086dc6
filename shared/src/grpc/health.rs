//! The `health` subcommand of both binaries, for container health checks
//! and Kubernetes probes (there is no `grpc_health_probe` in the image, and
//! a plain-text probe cannot pass mutual TLS): asks the running service's
//! own `grpc.health.v1` whether it is SERVING, presenting the service's own
//! certificate, which therefore must allow client authentication too (the
//! development CA's server certificates do).
use std::{net::SocketAddr, time::Duration};

use anyhow::Context as _;
use tonic::transport::Channel;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};
use x509_parser::extensions::GeneralName;

use crate::tls::TlsFiles;

/// Checks the service listening on `listen` (a wildcard address is asked
/// on loopback), with `tls` (its own server files), for `service` (a full
/// service name). Ok only for SERVING within `timeout`.
pub async fn probe(
    listen: SocketAddr,
    tls: &TlsFiles,
    service: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    // The name the server's certificate is checked against: its own first
    // DNS name, whatever address it is reached at.
    let server_name = first_dns_name(tls)?;
    let channel = Channel::from_shared(format!("https://{addr}"))?
        .tls_config(tls.client_config(&server_name)?)?
        .connect_timeout(timeout)
        .timeout(timeout);
    let answer = tokio::time::timeout(timeout, async {
        let channel = channel.connect().await?;
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await?;
        anyhow::Ok(response.into_inner().status())
    })
    .await
    .map_err(|_| anyhow::anyhow!("no answer from {addr} within {timeout:?}"))?
    .with_context(|| format!("asking {addr} (as {server_name}) for its health"))?;
    match answer {
        ServingStatus::Serving => Ok(()),
        other => anyhow::bail!("{service} at {addr} is {}", other.as_str_name()),
    }
}

fn first_dns_name(tls: &TlsFiles) -> anyhow::Result<String> {
    let pem = std::fs::read(&tls.cert).with_context(|| tls.cert.display().to_string())?;
    let (_, block) = x509_parser::pem::parse_x509_pem(&pem)
        .map_err(|e| anyhow::anyhow!("{}: no PEM certificate: {e}", tls.cert.display()))?;
    let cert = block
        .parse_x509()
        .map_err(|e| anyhow::anyhow!("{}: {e}", tls.cert.display()))?;
    let names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(name) => Some((*name).to_owned()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    names
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("{} names no DNS name", tls.cert.display()))
}

//! Mutual TLS for every service-to-service call (rustls through tonic), the
//! mapping from a client certificate to an identity, and the development PKI.
use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// Where a service finds its TLS material, all PEM.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signs the peers this service accepts (and talks to).
    pub ca_cert: PathBuf,
    /// This service's own certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl TlsFiles {
    fn identity(&self) -> anyhow::Result<Identity> {
        Ok(Identity::from_pem(read(&self.cert)?, read(&self.key)?))
    }

    fn ca(&self) -> anyhow::Result<Certificate> {
        Ok(Certificate::from_pem(read(&self.ca_cert)?))
    }

    /// A server config that requires every client to present a certificate
    /// signed by `ca_cert`.
    pub fn server_config(&self) -> anyhow::Result<ServerTlsConfig> {
        Ok(ServerTlsConfig::new()
            .identity(self.identity()?)
            .client_ca_root(self.ca()?))
    }

    /// A client config that presents this service's certificate and trusts
    /// only `ca_cert`; `server_name` is checked against the server's SANs.
    pub fn client_config(&self, server_name: &str) -> anyhow::Result<ClientTlsConfig> {
        Ok(ClientTlsConfig::new()
            .identity(self.identity()?)
            .ca_certificate(self.ca()?)
            .domain_name(server_name))
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The subject common name of a DER certificate.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

/// The development PKI: a CA, server certificates and merchant client
/// certificates, written as PEM files into one folder. Never for production.
pub mod dev {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };

    const CA_CERT: &str = "ca.pem";
    const CA_KEY: &str = "ca-key.pem";

    /// Creates the CA in `dir` unless it is already there.
    pub fn ensure_ca(dir: &Path) -> anyhow::Result<()> {
        if dir.join(CA_CERT).is_file() && dir.join(CA_KEY).is_file() {
            return Ok(());
        }
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "paybind development CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        write_private(&dir.join(CA_KEY), &key.serialize_pem())?;
        fs::write(dir.join(CA_CERT), cert.pem())?;
        Ok(())
    }

    /// Issues (or reuses) a server certificate `NAME.pem` / `NAME-key.pem`
    /// valid for `hosts` (DNS names or IP addresses), with CN = `name`.
    pub fn ensure_server(dir: &Path, name: &str, hosts: &[&str]) -> anyhow::Result<TlsFiles> {
        ensure_leaf(dir, name, hosts, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// Issues (or reuses) a client certificate whose CN is `identity`: a
    /// merchant's certificate identity at payment-svc.
    pub fn ensure_client(dir: &Path, identity: &str) -> anyhow::Result<TlsFiles> {
        ensure_leaf(dir, identity, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn ensure_leaf(
        dir: &Path,
        name: &str,
        hosts: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> anyhow::Result<TlsFiles> {
        ensure_ca(dir)?;
        let files = TlsFiles {
            ca_cert: dir.join(CA_CERT),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}-key.pem")),
        };
        if files.cert.is_file() && files.key.is_file() {
            return Ok(files);
        }
        let ca_key = KeyPair::from_pem(&fs::read_to_string(dir.join(CA_KEY))?)?;
        let issuer = Issuer::from_ca_cert_pem(&fs::read_to_string(&files.ca_cert)?, ca_key)?;

        let mut params =
            CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        write_private(&files.key, &key.serialize_pem())?;
        fs::write(&files.cert, cert.pem())?;
        Ok(files)
    }

    fn write_private(path: &Path, pem: &str) -> anyhow::Result<()> {
        fs::write(path, pem).with_context(|| format!("writing {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_pki_issues_certificates_named_by_their_identity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = dev::ensure_server(dir.path(), "payment-svc", &["localhost", "127.0.0.1"])
            .expect("server cert");
        let client = dev::ensure_client(dir.path(), "demo-shop").expect("client cert");
        let pem = fs::read(&client.cert).expect("read");
        let der = x509_parser::pem::parse_x509_pem(&pem)
            .expect("pem")
            .1
            .contents;
        assert_eq!(common_name(&der).as_deref(), Some("demo-shop"));
        // Reusing keeps the same files.
        let again = dev::ensure_client(dir.path(), "demo-shop").expect("again");
        assert_eq!(fs::read(&again.cert).expect("read"), pem);
        assert!(server.server_config().is_ok());
        assert!(client.client_config("localhost").is_ok());
    }
}

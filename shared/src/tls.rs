//! Mutual TLS for every service-to-service call (rustls through tonic), the
//! mapping from a client certificate to an identity, and the development PKI.
use std::{
    fs,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use anyhow::Context;
use hashlink::LruCache;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use x509_parser::extensions::GeneralName;

/// The subject CN of the development CA, by which production recognises
/// (and refuses) it.
pub const DEVELOPMENT_CA_NAME: &str = "paybind development CA";

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

    /// As [`Self::server_config`], also accepting clients whose certificate
    /// `other_ca` signed (merchant-svc: its operators' CA, and payment-svc's
    /// CA for the notifications payment-svc pushes). Which client may call
    /// what is decided per service, after the handshake.
    pub fn server_config_also_trusting(&self, other_ca: &Path) -> anyhow::Result<ServerTlsConfig> {
        let mut roots = read(&self.ca_cert)?;
        let other = read(other_ca)?;
        if other != roots {
            roots.push(b'\n');
            roots.extend_from_slice(&other);
        }
        Ok(ServerTlsConfig::new()
            .identity(self.identity()?)
            .client_ca_root(Certificate::from_pem(roots)))
    }

    /// A client config that presents this service's certificate and trusts
    /// only `ca_cert`; `server_name` is checked against the server's SANs.
    pub fn client_config(&self, server_name: &str) -> anyhow::Result<ClientTlsConfig> {
        Ok(ClientTlsConfig::new()
            .identity(self.identity()?)
            .ca_certificate(self.ca()?)
            .domain_name(server_name))
    }

    /// Fails if `ca_cert` is the development CA (whose key sits in a
    /// development folder and signs whatever `dev-cert` is asked for):
    /// production trusts only a CA of its own.
    pub fn refuse_development_ca(&self) -> anyhow::Result<()> {
        let pem = read(&self.ca_cert)?;
        for block in x509_parser::pem::Pem::iter_from_buffer(&pem) {
            let block = block.map_err(|e| anyhow::anyhow!("{}: {e}", self.ca_cert.display()))?;
            let ca = PeerCertificate::from_der(&block.contents)?;
            if ca.common_name.as_deref() == Some(DEVELOPMENT_CA_NAME) {
                anyhow::bail!(
                    "{} holds the paybind development CA: production trusts only a CA of its own",
                    self.ca_cert.display()
                );
            }
        }
        Ok(())
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The CAs trusted for one purpose, told apart by their keys: a
/// certificate counts as issued by one of them only if its signature
/// verifies against that CA's public key (names can be copied; a server
/// that trusts several CAs must know which one vouched for a caller).
///
/// Asked once per request with the connection's certificate, so answers
/// are kept: whether a given certificate (its exact DER) verifies against
/// this fixed set never changes, and checking it again cost a signature
/// verification per call (most of a checkout's CPU in the authentication
/// layer, BENCHMARKS.md). Clones share what they have kept.
#[derive(Clone)]
pub struct IssuerSet {
    cas: Arc<Vec<Vec<u8>>>,
    checked: Arc<Mutex<LruCache<Vec<u8>, bool>>>,
}

impl IssuerSet {
    /// Certificates whose answer is kept: a bound on memory, far above the
    /// number of clients one server sees.
    const KEPT: usize = 1024;

    /// Every certificate of a PEM file of CAs.
    pub fn from_pem_file(path: &Path) -> anyhow::Result<Self> {
        let pem = read(path)?;
        let mut cas = Vec::new();
        for block in x509_parser::pem::Pem::iter_from_buffer(&pem) {
            let block = block.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            x509_parser::parse_x509_certificate(&block.contents).map_err(|e| {
                anyhow::anyhow!("{}: not an X.509 certificate: {e}", path.display())
            })?;
            cas.push(block.contents);
        }
        if cas.is_empty() {
            anyhow::bail!("{}: no PEM certificate", path.display());
        }
        Ok(Self {
            cas: Arc::new(cas),
            checked: Arc::new(Mutex::new(LruCache::new(Self::KEPT))),
        })
    }

    /// Whether one of these CAs signed `peer`'s certificate.
    pub fn issued(&self, peer: &PeerCertificate) -> bool {
        let kept = self
            .checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(peer.der.as_slice())
            .copied();
        if let Some(answer) = kept {
            return answer;
        }
        let answer = self.verify(&peer.der);
        self.checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer.der.clone(), answer);
        answer
    }

    fn verify(&self, der: &[u8]) -> bool {
        let Ok((_, leaf)) = x509_parser::parse_x509_certificate(der) else {
            return false;
        };
        self.cas.iter().any(|der| {
            x509_parser::parse_x509_certificate(der).is_ok_and(|(_, ca)| {
                leaf.issuer() == ca.subject()
                    && leaf.verify_signature(Some(ca.public_key())).is_ok()
            })
        })
    }
}

impl std::fmt::Debug for IssuerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IssuerSet({} CAs)", self.cas.len())
    }
}

/// The URI a merchant's client certificate carries among its subject
/// alternative names, naming the merchant: `urn:paybind:merchant:NAME`.
pub const MERCHANT_URI_PREFIX: &str = "urn:paybind:merchant:";

/// The SHA-256 of a certificate's DER encoding: what pins one certificate
/// (rather than any certificate the CA signed with the same name).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertFingerprint([u8; 32]);

impl CertFingerprint {
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    /// Reads a fingerprint as operators copy it: 64 hex digits, any case,
    /// with or without the colons `openssl x509 -fingerprint -sha256` prints.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let digits: String = text.trim().chars().filter(|c| *c != ':').collect();
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&digits, &mut bytes)
            .map_err(|_| anyhow::anyhow!("a SHA-256 fingerprint is 64 hex digits"))?;
        Ok(Self(bytes))
    }

    /// Lowercase hex with no separators: how it is stored.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// As `openssl x509 -noout -fingerprint -sha256` prints it.
impl std::fmt::Display for CertFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for CertFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertFingerprint({self})")
    }
}

/// What a (verified) client certificate says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// The subject's first common name.
    pub common_name: Option<String>,
    /// The URIs among its subject alternative names.
    pub uris: Vec<String>,
    pub fingerprint: CertFingerprint,
    /// The end of its validity, Unix milliseconds.
    pub not_after_ms: i64,
    /// Whether it may authenticate a client (its extended key usage names
    /// clientAuth, or it has none).
    pub client_auth: bool,
    /// Its DER encoding, to check which CA signed it ([`IssuerSet`]).
    pub der: Vec<u8>,
}

impl PeerCertificate {
    pub fn from_der(der: &[u8]) -> anyhow::Result<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| anyhow::anyhow!("not an X.509 certificate: {e}"))?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        let uris = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::URI(uri) => Some((*uri).to_owned()),
                    _ => None,
                })
                .collect(),
            Ok(None) => Vec::new(),
            Err(e) => anyhow::bail!("unreadable subject alternative names: {e}"),
        };
        let client_auth = match cert.extended_key_usage() {
            Ok(Some(eku)) => eku.value.client_auth || eku.value.any,
            Ok(None) => true,
            Err(e) => anyhow::bail!("unreadable extended key usage: {e}"),
        };
        Ok(Self {
            der: der.to_vec(),
            common_name,
            uris,
            client_auth,
            fingerprint: CertFingerprint::of_der(der),
            not_after_ms: cert.validity().not_after.timestamp().saturating_mul(1000),
        })
    }

    /// The first certificate of a PEM file (a chain starts with the leaf).
    pub fn from_pem_file(path: &Path) -> anyhow::Result<Self> {
        let pem = read(path)?;
        let (_, block) = x509_parser::pem::parse_x509_pem(&pem)
            .map_err(|e| anyhow::anyhow!("{}: no PEM certificate: {e}", path.display()))?;
        Self::from_der(&block.contents).with_context(|| path.display().to_string())
    }

    /// The merchant the certificate names: the NAME of its one
    /// `urn:paybind:merchant:NAME` URI. None if it has none, or more than
    /// one (a certificate speaks for one merchant).
    pub fn merchant_name(&self) -> Option<&str> {
        let mut names = self
            .uris
            .iter()
            .filter_map(|uri| uri.strip_prefix(MERCHANT_URI_PREFIX));
        match (names.next(), names.next()) {
            (Some(name), None) if !name.is_empty() => Some(name),
            _ => None,
        }
    }
}

/// The development PKI: a CA, server certificates and merchant client
/// certificates, written as PEM files into one folder. Never for production.
pub mod dev {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, SanType,
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
            .push(DnType::CommonName, DEVELOPMENT_CA_NAME);
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
    /// valid for `hosts` (DNS names or IP addresses), with CN = `name`. It
    /// may authenticate a client too: the service's `health` subcommand
    /// presents it to the service itself.
    pub fn ensure_server(dir: &Path, name: &str, hosts: &[&str]) -> anyhow::Result<TlsFiles> {
        let sans = CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())?
            .subject_alt_names;
        ensure_leaf(
            dir,
            name,
            name,
            sans,
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
    }

    /// Issues (or reuses) an operator's client certificate: CN = `identity`
    /// and nothing else (merchant-svc's operators).
    pub fn ensure_client(dir: &Path, identity: &str) -> anyhow::Result<TlsFiles> {
        ensure_leaf(
            dir,
            identity,
            identity,
            Vec::new(),
            &[ExtendedKeyUsagePurpose::ClientAuth],
        )
    }

    /// Issues (or reuses) a merchant's client certificate, `NAME.pem`: CN
    /// and SAN URI `urn:paybind:merchant:NAME`. payment-svc accepts it once
    /// its fingerprint is registered for the merchant of that name.
    pub fn ensure_merchant(dir: &Path, name: &str) -> anyhow::Result<TlsFiles> {
        ensure_merchant_as(dir, name, name)
    }

    /// As [`ensure_merchant`], written to `FILE_STEM.pem` (a second
    /// certificate for the same merchant, as a rotation has).
    pub fn ensure_merchant_as(dir: &Path, name: &str, file_stem: &str) -> anyhow::Result<TlsFiles> {
        let uri = format!("{MERCHANT_URI_PREFIX}{name}");
        ensure_leaf(
            dir,
            file_stem,
            name,
            vec![SanType::URI(uri.as_str().try_into()?)],
            &[ExtendedKeyUsagePurpose::ClientAuth],
        )
    }

    fn ensure_leaf(
        dir: &Path,
        file_stem: &str,
        name: &str,
        sans: Vec<SanType>,
        usages: &[ExtendedKeyUsagePurpose],
    ) -> anyhow::Result<TlsFiles> {
        ensure_ca(dir)?;
        let files = TlsFiles {
            ca_cert: dir.join(CA_CERT),
            cert: dir.join(format!("{file_stem}.pem")),
            key: dir.join(format!("{file_stem}-key.pem")),
        };
        let wanted_uris: Vec<String> = sans
            .iter()
            .filter_map(|san| match san {
                SanType::URI(uri) => Some(uri.as_str().to_owned()),
                _ => None,
            })
            .collect();
        if files.cert.is_file() && files.key.is_file() {
            // Reused unless it predates the SAN URIs or the client use it
            // should carry (a development folder made by an older version).
            let existing = PeerCertificate::from_pem_file(&files.cert)?;
            let wants_client = usages.contains(&ExtendedKeyUsagePurpose::ClientAuth);
            if existing.uris == wanted_uris && (existing.client_auth || !wants_client) {
                return Ok(files);
            }
        }
        let ca_key = KeyPair::from_pem(&fs::read_to_string(dir.join(CA_KEY))?)?;
        let issuer = Issuer::from_ca_cert_pem(&fs::read_to_string(&files.ca_cert)?, ca_key)?;

        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = usages.to_vec();
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
    fn dev_pki_issues_merchant_certificates_named_by_their_san_uri() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = dev::ensure_server(dir.path(), "payment-svc", &["localhost", "127.0.0.1"])
            .expect("server cert");
        let merchant = dev::ensure_merchant(dir.path(), "demo-shop").expect("merchant cert");
        let peer = PeerCertificate::from_pem_file(&merchant.cert).expect("parse");
        assert_eq!(peer.merchant_name(), Some("demo-shop"));
        assert_eq!(peer.uris, ["urn:paybind:merchant:demo-shop"]);
        // Reusing keeps the same files.
        let pem = fs::read(&merchant.cert).expect("read");
        let again = dev::ensure_merchant(dir.path(), "demo-shop").expect("again");
        assert_eq!(fs::read(&again.cert).expect("read"), pem);
        // A second certificate for the same merchant is another fingerprint.
        let second = dev::ensure_merchant_as(dir.path(), "demo-shop", "demo-shop-2").expect("2nd");
        let second = PeerCertificate::from_pem_file(&second.cert).expect("parse");
        assert_eq!(second.merchant_name(), Some("demo-shop"));
        assert_ne!(second.fingerprint, peer.fingerprint);
        assert!(server.server_config().is_ok());
        assert!(merchant.client_config("localhost").is_ok());
        // A server certificate also authenticates its own health probe.
        let server = PeerCertificate::from_pem_file(&server.cert).expect("parse");
        assert!(server.client_auth && peer.client_auth);
    }

    #[test]
    fn an_issuer_is_known_by_its_key_not_its_name() {
        let ours = tempfile::tempdir().expect("tempdir");
        let theirs = tempfile::tempdir().expect("tempdir");
        // Two development CAs: the same subject name, different keys.
        let mine = dev::ensure_client(ours.path(), "payment-svc").expect("cert");
        let forged = dev::ensure_client(theirs.path(), "payment-svc").expect("cert");
        let issuers = IssuerSet::from_pem_file(&mine.ca_cert).expect("CA");
        let peer = |files: &TlsFiles| PeerCertificate::from_pem_file(&files.cert).expect("parse");
        // Asked twice each: the second answer is the kept one.
        for _ in 0..2 {
            assert!(issuers.issued(&peer(&mine)));
            assert!(!issuers.issued(&peer(&forged)), "same names, another key");
            let mut unreadable = peer(&mine);
            unreadable.der.truncate(10);
            assert!(!issuers.issued(&unreadable));
        }
    }

    #[test]
    fn an_operator_certificate_names_no_merchant() {
        let dir = tempfile::tempdir().expect("tempdir");
        let operator = dev::ensure_client(dir.path(), "demo-shop").expect("cert");
        let peer = PeerCertificate::from_pem_file(&operator.cert).expect("parse");
        assert_eq!(peer.common_name.as_deref(), Some("demo-shop"));
        assert_eq!(peer.merchant_name(), None, "a CN alone names no merchant");
    }

    #[test]
    fn a_certificate_naming_two_merchants_names_none() {
        let peer = |uris: &[&str]| PeerCertificate {
            common_name: None,
            uris: uris.iter().map(|u| u.to_string()).collect(),
            fingerprint: CertFingerprint::of_der(b"x"),
            not_after_ms: 0,
            client_auth: true,
            der: Vec::new(),
        };
        let two = peer(&["urn:paybind:merchant:a", "urn:paybind:merchant:b"]);
        assert_eq!(two.merchant_name(), None);
        assert_eq!(peer(&["urn:paybind:merchant:"]).merchant_name(), None);
        assert_eq!(
            peer(&["https://a.example", "urn:paybind:merchant:a"]).merchant_name(),
            Some("a")
        );
    }

    #[test]
    fn fingerprints_read_as_openssl_prints_them() {
        let fp = CertFingerprint::of_der(b"certificate");
        let printed = fp.to_string();
        assert_eq!(printed.len(), 32 * 3 - 1);
        assert_eq!(CertFingerprint::parse(&printed).expect("colons"), fp);
        assert_eq!(CertFingerprint::parse(&fp.to_hex()).expect("hex"), fp);
        assert_eq!(
            CertFingerprint::parse(&fp.to_hex().to_uppercase()).expect("upper"),
            fp
        );
        assert!(CertFingerprint::parse("abc").is_err());
        assert!(CertFingerprint::parse(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn production_recognises_the_development_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = dev::ensure_merchant(dir.path(), "shop").expect("cert");
        assert!(files.refuse_development_ca().is_err());
        // A CA of one's own passes.
        let own = TlsFiles {
            ca_cert: files.cert.clone(),
            ..files.clone()
        };
        own.refuse_development_ca().expect("not the development CA");
        // A bundle with the development CA anywhere in it does not.
        let bundle = dir.path().join("bundle.pem");
        let mut both = fs::read(&files.cert).expect("own");
        both.extend(fs::read(&files.ca_cert).expect("dev CA"));
        fs::write(&bundle, both).expect("write");
        let bundled = TlsFiles {
            ca_cert: bundle,
            ..files
        };
        assert!(bundled.refuse_development_ca().is_err());
    }
}

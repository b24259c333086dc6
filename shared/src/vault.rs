//! Encryption at rest (AES-256-GCM) for card numbers and ID numbers at
//! payment-svc and binding tokens at merchant-svc, and keyed hashes for the
//! values paybind must find again without storing them (card fingerprints,
//! one-time codes).
//!
//! Every ciphertext is stored with the id of the key that sealed it, so keys
//! rotate: new data is sealed with the active key, old data still opens with
//! its own.
use std::collections::BTreeMap;

use aes_gcm::{
    aead::{Aead, KeyInit, Payload},
    Aes256Gcm, Nonce,
};
use anyhow::{anyhow, bail, Context};
use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use zeroize::Zeroizing;

const NONCE_LEN: usize = 12;

/// A sealed value: the key id and `nonce || ciphertext || tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub blob: Vec<u8>,
}

/// What a ciphertext protects; bound in as associated data so a ciphertext
/// cannot be moved to another column and opened as something else.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    CardNumber,
    IdNumber,
    /// A binding token at merchant-svc, sealed to its user.
    BindingToken,
}

impl Purpose {
    fn aad(self) -> &'static [u8] {
        match self {
            Self::CardNumber => b"paybind/card-number/v1",
            Self::IdNumber => b"paybind/id-number/v1",
            Self::BindingToken => b"paybind/binding-token/v1",
        }
    }

    /// The purpose and the row that owns the value: a ciphertext moved to
    /// another row does not open there.
    fn aad_for(self, owner: &str) -> Vec<u8> {
        let mut aad = self.aad().to_vec();
        aad.push(0);
        aad.extend_from_slice(owner.as_bytes());
        aad
    }
}

impl Sealed {
    /// `KEY_ID:BASE64`, for a text column.
    pub fn to_text(&self) -> String {
        format!("{}:{}", self.key_id, STANDARD.encode(&self.blob))
    }

    pub fn from_text(text: &str) -> anyhow::Result<Self> {
        let (key_id, blob) = text
            .split_once(':')
            .ok_or_else(|| anyhow!("a sealed value is KEY_ID:BASE64"))?;
        Ok(Self {
            key_id: key_id.to_owned(),
            blob: STANDARD
                .decode(blob)
                .map_err(|_| anyhow!("a sealed value is KEY_ID:BASE64"))?,
        })
    }
}

/// The data-encryption keys.
pub struct Vault {
    active: String,
    ciphers: BTreeMap<String, Aes256Gcm>,
}

/// Decodes a base64 secret that must be exactly 32 bytes.
pub fn decode_key(name: &str, secret: &SecretString) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let bytes = Zeroizing::new(
        STANDARD
            .decode(secret.expose_secret().trim())
            .with_context(|| format!("{name} is not valid base64"))?,
    );
    if bytes.len() != 32 {
        bail!(
            "{name} must be 32 bytes (base64 of 32 random bytes), got {}",
            bytes.len()
        );
    }
    Ok(bytes)
}

impl Vault {
    pub fn new(keys: &BTreeMap<String, SecretString>, active: &str) -> anyhow::Result<Self> {
        let mut ciphers = BTreeMap::new();
        for (id, secret) in keys {
            let key = decode_key(&format!("secrets.vault_keys.{id}"), secret)?;
            let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| anyhow!("bad key length"))?;
            ciphers.insert(id.clone(), cipher);
        }
        if !ciphers.contains_key(active) {
            bail!("secrets.active_vault_key {active:?} is not one of secrets.vault_keys");
        }
        Ok(Self {
            active: active.to_owned(),
            ciphers,
        })
    }

    pub fn seal(&self, purpose: Purpose, plaintext: &[u8]) -> anyhow::Result<Sealed> {
        self.seal_with_nonce(purpose.aad(), plaintext, rand::random::<[u8; NONCE_LEN]>())
    }

    /// Seals `plaintext` for `purpose` in the row `owner` (its id): it
    /// opens only with the same owner.
    pub fn seal_for(
        &self,
        purpose: Purpose,
        owner: &str,
        plaintext: &[u8],
    ) -> anyhow::Result<Sealed> {
        self.seal_with_nonce(
            &purpose.aad_for(owner),
            plaintext,
            rand::random::<[u8; NONCE_LEN]>(),
        )
    }

    fn seal_with_nonce(
        &self,
        aad: &[u8],
        plaintext: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> anyhow::Result<Sealed> {
        let cipher = self
            .ciphers
            .get(&self.active)
            .ok_or_else(|| anyhow!("active key missing"))?;
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| anyhow!("encryption failed"))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        Ok(Sealed {
            key_id: self.active.clone(),
            blob,
        })
    }

    pub fn open(&self, purpose: Purpose, sealed: &Sealed) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        self.open_with(purpose.aad(), sealed)
    }

    /// Opens what [`Vault::seal_for`] sealed for `owner`.
    pub fn open_for(
        &self,
        purpose: Purpose,
        owner: &str,
        sealed: &Sealed,
    ) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        self.open_with(&purpose.aad_for(owner), sealed)
    }

    fn open_with(&self, aad: &[u8], sealed: &Sealed) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        let cipher = self
            .ciphers
            .get(&sealed.key_id)
            .ok_or_else(|| anyhow!("no vault key with id {:?}", sealed.key_id))?;
        if sealed.blob.len() < NONCE_LEN {
            bail!("ciphertext too short");
        }
        let (nonce, ct) = sealed.blob.split_at(NONCE_LEN);
        let plain = cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| anyhow!("ciphertext failed authentication"))?;
        Ok(Zeroizing::new(plain))
    }

    /// Opens a sealed UTF-8 string.
    pub fn open_string(
        &self,
        purpose: Purpose,
        sealed: &Sealed,
    ) -> anyhow::Result<Zeroizing<String>> {
        let bytes = self.open(purpose, sealed)?;
        let text = std::str::from_utf8(&bytes).context("sealed value is not UTF-8")?;
        Ok(Zeroizing::new(text.to_owned()))
    }
}

/// HMAC-SHA256 under a secret key, for lookups that must not reveal the input.
#[derive(Clone)]
pub struct KeyedHasher {
    key: Zeroizing<Vec<u8>>,
}

impl KeyedHasher {
    pub fn new(name: &str, secret: &SecretString) -> anyhow::Result<Self> {
        Ok(Self {
            key: decode_key(name, secret)?,
        })
    }

    /// The MAC of the parts, each length-prefixed so that no two different
    /// lists of parts hash alike.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        #[allow(clippy::expect_used)] // HMAC accepts keys of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("any key length");
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    pub fn mac_hex(&self, parts: &[&[u8]]) -> String {
        hex::encode(self.mac(parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault_with(keys: &[(&str, &[u8; 32])], active: &str) -> Vault {
        let keys = keys
            .iter()
            .map(|(id, k)| (id.to_string(), SecretString::from(STANDARD.encode(k))))
            .collect();
        Vault::new(&keys, active).expect("vault")
    }

    /// AES-256-GCM, test case 16 of McGrew & Viega's GCM specification (the
    /// vectors NIST's GCM validation uses): 256-bit key, 96-bit IV, AAD.
    #[test]
    fn matches_the_published_gcm_vector() {
        let key: [u8; 32] =
            hex::decode("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
                .expect("hex")
                .try_into()
                .expect("32");
        let iv: [u8; 12] = hex::decode("cafebabefacedbaddecaf888")
            .expect("hex")
            .try_into()
            .expect("12");
        let pt = hex::decode(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        )
        .expect("hex");
        let aad = hex::decode("feedfacedeadbeeffeedfacedeadbeefabaddad2").expect("hex");
        let expected = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662\
                        76fc6ece0f4e1768cddf8853bb2d551b";
        let cipher = Aes256Gcm::new_from_slice(&key).expect("key");
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&iv),
                Payload {
                    msg: &pt,
                    aad: &aad,
                },
            )
            .expect("encrypt");
        assert_eq!(hex::encode(ct), expected);
    }

    #[test]
    fn seals_and_opens_and_rotates_keys() {
        let old = vault_with(&[("k1", &[1; 32])], "k1");
        let sealed_old = old
            .seal(Purpose::CardNumber, b"4242424242424242")
            .expect("seal");
        assert_eq!(sealed_old.key_id, "k1");
        assert!(
            !sealed_old.blob.windows(4).any(|w| w == b"4242"),
            "no plaintext in the blob"
        );

        let rotated = vault_with(&[("k1", &[1; 32]), ("k2", &[2; 32])], "k2");
        let sealed_new = rotated
            .seal(Purpose::CardNumber, b"5555555555554444")
            .expect("seal");
        assert_eq!(sealed_new.key_id, "k2");
        assert_eq!(
            &*rotated
                .open(Purpose::CardNumber, &sealed_old)
                .expect("old opens"),
            b"4242424242424242"
        );
        assert_eq!(
            &*rotated
                .open(Purpose::CardNumber, &sealed_new)
                .expect("new opens"),
            b"5555555555554444"
        );
    }

    #[test]
    fn a_value_sealed_for_one_row_opens_only_there() {
        let vault = vault_with(&[("k1", &[7; 32])], "k1");
        let sealed = vault
            .seal_for(Purpose::BindingToken, "alice", b"pbt_1_secret")
            .expect("seal");
        let opened = vault
            .open_for(Purpose::BindingToken, "alice", &sealed)
            .expect("open");
        assert_eq!(opened.as_slice(), b"pbt_1_secret");
        assert!(vault
            .open_for(Purpose::BindingToken, "bob", &sealed)
            .is_err());
        assert!(vault.open(Purpose::BindingToken, &sealed).is_err());
        // Through a text column and back.
        let text = sealed.to_text();
        assert!(text.starts_with("k1:") && !text.contains("secret"));
        assert_eq!(Sealed::from_text(&text).expect("parse"), sealed);
        assert!(Sealed::from_text("no-colon").is_err());
        assert!(Sealed::from_text("k1:not base64!").is_err());
    }

    #[test]
    fn refuses_tampering_and_wrong_purpose() {
        let vault = vault_with(&[("k1", &[7; 32])], "k1");
        let mut sealed = vault
            .seal(Purpose::IdNumber, b"11010519491231002X")
            .expect("seal");
        assert!(
            vault.open(Purpose::CardNumber, &sealed).is_err(),
            "purpose is bound"
        );
        let last = sealed.blob.len() - 1;
        sealed.blob[last] ^= 1;
        assert!(
            vault.open(Purpose::IdNumber, &sealed).is_err(),
            "tag is checked"
        );
    }

    #[test]
    fn refuses_short_or_unknown_keys() {
        let short = [(
            "k1".to_string(),
            SecretString::from(STANDARD.encode([1u8; 16])),
        )]
        .into();
        assert!(Vault::new(&short, "k1").is_err());
        let ok = [(
            "k1".to_string(),
            SecretString::from(STANDARD.encode([1u8; 32])),
        )]
        .into();
        assert!(Vault::new(&ok, "k9").is_err());
    }

    #[test]
    fn keyed_hash_separates_parts() {
        let h =
            KeyedHasher::new("k", &SecretString::from(STANDARD.encode([3u8; 32]))).expect("key");
        assert_ne!(h.mac(&[b"ab", b"c"]), h.mac(&[b"a", b"bc"]));
        assert_eq!(h.mac(&[b"x"]), h.mac(&[b"x"]));
        let other =
            KeyedHasher::new("k", &SecretString::from(STANDARD.encode([4u8; 32]))).expect("key");
        assert_ne!(h.mac(&[b"x"]), other.mac(&[b"x"]));
    }
}

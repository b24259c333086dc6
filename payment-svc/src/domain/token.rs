//! Binding tokens.
//!
//! A token is `pbt_` and the base64url of: a key id byte, the binding's 128
//! random id bits, and 128 bits of HMAC over (merchant id, merchant user id,
//! binding id). So a token:
//! - is random (the id is 128 random bits) and merchant- and user-scoped (the
//!   MAC covers both, so another merchant or another user cannot use it);
//! - is never stored: the database holds only the binding id, and without the
//!   token key the database alone yields no usable token;
//! - can be shown again to its merchant (GetBindSession, ListBindings) by
//!   computing the MAC again;
//! - is checked in memory before any database round trip;
//! - names the key that made it, so the key rotates: new tokens (and the
//!   tokens shown again) use the active key, old ones are accepted for as
//!   long as their key is configured.
use std::collections::BTreeMap;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use paybind_shared::ids::{BindingId, BindingToken, MerchantId, MerchantUserId};
use subtle::ConstantTimeEq;

use super::vault::KeyedHasher;

const PREFIX: &str = "pbt_";
const ID_LEN: usize = 16;
const MAC_LEN: usize = 16;

/// Issues and checks binding tokens.
#[derive(Clone)]
pub struct TokenCodec {
    keys: BTreeMap<u8, KeyedHasher>,
    active: u8,
}

impl TokenCodec {
    /// One key, id 1.
    pub fn new(hasher: KeyedHasher) -> Self {
        Self {
            keys: BTreeMap::from([(1, hasher)]),
            active: 1,
        }
    }

    /// Keys by id; new tokens use `active`.
    pub fn with_keys(keys: BTreeMap<u8, KeyedHasher>, active: u8) -> anyhow::Result<Self> {
        if !keys.contains_key(&active) {
            anyhow::bail!("the active token key {active} is not configured");
        }
        Ok(Self { keys, active })
    }

    fn mac(
        hasher: &KeyedHasher,
        merchant_id: &MerchantId,
        merchant_user_id: &MerchantUserId,
        raw: &[u8; ID_LEN],
    ) -> [u8; MAC_LEN] {
        let full = hasher.mac(&[
            b"paybind/binding-token/v1",
            merchant_id.as_str().as_bytes(),
            merchant_user_id.as_str().as_bytes(),
            raw,
        ]);
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// The token of a binding; `None` only for a malformed binding id.
    pub fn token_for(
        &self,
        merchant_id: &MerchantId,
        merchant_user_id: &MerchantUserId,
        binding_id: &BindingId,
    ) -> Option<BindingToken> {
        let raw = binding_id.raw()?;
        let hasher = self.keys.get(&self.active)?;
        let mut bytes = Vec::with_capacity(1 + ID_LEN + MAC_LEN);
        bytes.push(self.active);
        bytes.extend_from_slice(&raw);
        bytes.extend_from_slice(&Self::mac(hasher, merchant_id, merchant_user_id, &raw));
        Some(BindingToken::from_trusted(format!(
            "{PREFIX}{}",
            URL_SAFE_NO_PAD.encode(bytes)
        )))
    }

    /// The binding id a token names, if the token is well formed and was
    /// issued to this merchant for this user. Constant-time MAC comparison.
    pub fn binding_id_of(
        &self,
        token: &BindingToken,
        merchant_id: &MerchantId,
        merchant_user_id: &MerchantUserId,
    ) -> Option<BindingId> {
        let body = token.expose().strip_prefix(PREFIX)?;
        if body.len() > 64 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(body).ok()?;
        if bytes.len() != 1 + ID_LEN + MAC_LEN {
            return None;
        }
        let hasher = self.keys.get(&bytes[0])?;
        let raw: [u8; ID_LEN] = bytes[1..1 + ID_LEN].try_into().ok()?;
        let expected = Self::mac(hasher, merchant_id, merchant_user_id, &raw);
        if bool::from(expected.ct_eq(&bytes[1 + ID_LEN..])) {
            Some(BindingId::from_raw(&raw))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use secrecy::SecretString;

    fn codec(seed: u8) -> TokenCodec {
        TokenCodec::new(
            KeyedHasher::new("t", &SecretString::from(STANDARD.encode([seed; 32]))).expect("key"),
        )
    }

    fn m(id: &str) -> MerchantId {
        MerchantId::parse(id).expect("merchant")
    }

    fn u(id: &str) -> MerchantUserId {
        MerchantUserId::parse(id).expect("user")
    }

    #[test]
    fn token_round_trips_for_its_merchant_and_user_only() {
        let c = codec(1);
        let id = BindingId::from_raw(&rand::random());
        let token = c.token_for(&m("m1"), &u("u1"), &id).expect("token");
        assert!(token.expose().starts_with("pbt_"));
        assert!(
            !token.expose().contains(&id.as_str()[4..]),
            "the id is not visible as hex"
        );
        assert_eq!(
            c.binding_id_of(&token, &m("m1"), &u("u1")),
            Some(id.clone())
        );
        assert_eq!(
            c.binding_id_of(&token, &m("m2"), &u("u1")),
            None,
            "another merchant"
        );
        assert_eq!(
            c.binding_id_of(&token, &m("m1"), &u("u2")),
            None,
            "another user"
        );
        assert_eq!(
            codec(2).binding_id_of(&token, &m("m1"), &u("u1")),
            None,
            "another key"
        );
        assert_eq!(c.token_for(&m("m1"), &u("u1"), &id), Some(token), "stable");
    }

    fn hasher(seed: u8) -> KeyedHasher {
        KeyedHasher::new("t", &SecretString::from(STANDARD.encode([seed; 32]))).expect("key")
    }

    #[test]
    fn the_token_key_rotates() {
        let id = BindingId::from_raw(&rand::random());
        let old = codec(1);
        let old_token = old.token_for(&m("m1"), &u("u1"), &id).expect("token");
        // Key 2 added and made active; key 1 kept for the tokens out there.
        let both = TokenCodec::with_keys(BTreeMap::from([(1, hasher(1)), (2, hasher(2))]), 2)
            .expect("codec");
        assert_eq!(
            both.binding_id_of(&old_token, &m("m1"), &u("u1")),
            Some(id.clone())
        );
        let new_token = both.token_for(&m("m1"), &u("u1"), &id).expect("token");
        assert_ne!(new_token, old_token, "shown again with the active key");
        assert_eq!(
            both.binding_id_of(&new_token, &m("m1"), &u("u1")),
            Some(id.clone())
        );
        // Key 1 retired: its tokens no longer pay, the new ones do.
        let new_only = TokenCodec::with_keys(BTreeMap::from([(2, hasher(2))]), 2).expect("codec");
        assert_eq!(new_only.binding_id_of(&old_token, &m("m1"), &u("u1")), None);
        assert_eq!(
            new_only.binding_id_of(&new_token, &m("m1"), &u("u1")),
            Some(id)
        );
        assert!(TokenCodec::with_keys(BTreeMap::from([(1, hasher(1))]), 2).is_err());
    }

    #[test]
    fn garbage_tokens_are_refused() {
        let c = codec(1);
        for bad in [
            "",
            "pbt_",
            "pbt_!!!",
            "abc",
            &format!("pbt_{}", "A".repeat(500)),
        ] {
            let bad = BindingToken::from_trusted(bad.to_owned());
            assert_eq!(c.binding_id_of(&bad, &m("m1"), &u("u1")), None);
        }
        let id = BindingId::from_raw(&[9; 16]);
        let mut token = c
            .token_for(&m("m1"), &u("u1"), &id)
            .expect("token")
            .expose()
            .to_owned();
        let last = token.pop().expect("char");
        token.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(
            c.binding_id_of(&BindingToken::from_trusted(token), &m("m1"), &u("u1")),
            None,
            "one character changed"
        );
    }
}

//! One-time codes sent by SMS to verify the shopper: 6 random digits, stored
//! only as a keyed hash, valid 5 minutes, 5 tries, resends throttled (the
//! interval is configured; totals per session and phone are velocity limits).
use paybind_shared::ids::SessionId;
use rand::Rng;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::vault::KeyedHasher;

/// How long a code is valid.
pub const CODE_TTL_MS: i64 = 5 * 60 * 1000;
/// Wrong tries before the session fails.
pub const MAX_TRIES: u32 = 5;
/// Resends allowed per session (the first code not counted).
pub const MAX_RESENDS: u32 = 3;

/// A fresh 6-digit code.
pub fn generate() -> Zeroizing<String> {
    Zeroizing::new(format!("{:06}", rand::thread_rng().gen_range(0..1_000_000)))
}

/// The stored form of a code: bound to its session, useless without the key.
pub fn hash(hasher: &KeyedHasher, session_id: &SessionId, code: &str) -> String {
    hasher.mac_hex(&[
        b"paybind/otp/v1",
        session_id.as_str().as_bytes(),
        code.as_bytes(),
    ])
}

/// Compares a submitted code with the stored hash in constant time.
pub fn matches(
    hasher: &KeyedHasher,
    session_id: &SessionId,
    submitted: &str,
    stored_hash: &str,
) -> bool {
    let candidate = hash(hasher, session_id, submitted.trim());
    bool::from(candidate.as_bytes().ct_eq(stored_hash.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::{engine::general_purpose::STANDARD, Engine};
    use secrecy::SecretString;

    #[test]
    fn codes_are_six_digits_and_hash_per_session() {
        let h =
            KeyedHasher::new("o", &SecretString::from(STANDARD.encode([5u8; 32]))).expect("key");
        let code = generate();
        let (s1, s2) = (
            SessionId::from_stored("bs_1".into()),
            SessionId::from_stored("bs_2".into()),
        );
        assert_eq!(code.len(), 6);
        assert!(code.bytes().all(|b| b.is_ascii_digit()));
        let stored = hash(&h, &s1, &code);
        assert!(!stored.contains(code.as_str()));
        assert!(matches(&h, &s1, &code, &stored));
        assert!(!matches(&h, &s2, &code, &stored), "bound to the session");
        let wrong = if code.as_str() == "000000" {
            "000001"
        } else {
            "000000"
        };
        assert!(!matches(&h, &s1, wrong, &stored));
    }
}

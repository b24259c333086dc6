//! Identifiers: a readable prefix and 128 random bits, e.g. `pay_3f2a…`.

/// A new random identifier with `prefix`, e.g. `new_id("pay")`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", hex::encode(rand::random::<[u8; 16]>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_unique() {
        let a = new_id("pay");
        let b = new_id("pay");
        assert!(a.starts_with("pay_"));
        assert_eq!(a.len(), 4 + 32);
        assert_ne!(a, b);
    }
}

//! Shoppers at the storefront: signing up and in with a password, and the
//! settings they keep. A shopper is one of the shop's users; a user made
//! over the gRPC API has no password and cannot sign in.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use argon2::{
    password_hash::{PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use paybind_shared::{
    clock::now_ms,
    db::StoreError,
    fields::Invalid,
    ids::{MerchantUserId, OrderId},
    model::Presentation,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use super::{
    model::{Order, PasswordHash, User},
    NewUser, Shop, ShopError, ShopResult,
};

/// A password as typed: 8 to 128 characters. `Debug` never shows it, and
/// it is wiped from memory when dropped.
#[derive(Clone)]
pub struct Password(SecretString);

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let chars = raw.chars().count();
        if chars < Self::MIN_CHARS {
            return Err(Invalid::argument(format!(
                "the password must be at least {} characters",
                Self::MIN_CHARS
            )));
        }
        if chars > Self::MAX_CHARS {
            return Err(Invalid::argument(format!(
                "the password must be at most {} characters",
                Self::MAX_CHARS
            )));
        }
        Ok(Self(SecretString::from(raw.to_owned())))
    }

    fn bytes(&self) -> &[u8] {
        self.0.expose_secret().as_bytes()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Failed sign-ins allowed per user name in one window.
const MAX_FAILURES: u32 = 10;
const FAILURE_WINDOW_MS: i64 = 15 * 60 * 1000;

/// Hashes and checks passwords (argon2id with the crate's default
/// parameters, a random salt each), a few at a time: each takes tens of
/// milliseconds of a core and 19 MiB, so a burst of sign-ins waits its turn
/// instead of starving the rest of the service.
pub(super) struct Passwords {
    permits: Arc<Semaphore>,
    /// Failed sign-ins per user name: (failures, start of their window).
    failures: Mutex<HashMap<MerchantUserId, (u32, i64)>>,
}

impl Default for Passwords {
    fn default() -> Self {
        Self {
            permits: Arc::new(Semaphore::new(2)),
            failures: Mutex::default(),
        }
    }
}

/// Checked for a user name with no password, so that an unknown name
/// takes as long as a wrong password (no probing which names exist).
fn decoy_hash() -> ShopResult<&'static str> {
    static DECOY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DECOY.get() {
        return Ok(hash);
    }
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let random: [u8; 16] = rand::random();
    let hash = Argon2::default()
        .hash_password(&random, &salt)
        .map_err(|e| anyhow::anyhow!("hashing the decoy password: {e}"))?
        .to_string();
    Ok(DECOY.get_or_init(|| hash))
}

impl Passwords {
    async fn hash(&self, password: Password) -> ShopResult<PasswordHash> {
        let _permit = self.permits.clone().acquire_owned().await;
        let phc = tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            Argon2::default()
                .hash_password(password.bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
        })
        .await
        .map_err(|e| anyhow::anyhow!("password hashing task: {e}"))??;
        Ok(PasswordHash::from_stored(phc))
    }

    /// Whether `password` is the one `stored` was made from (`None`: no
    /// password: checked against the decoy, and false). The comparison is
    /// the argon2 crate's, in constant time.
    async fn verify(&self, password: Password, stored: Option<PasswordHash>) -> ShopResult<bool> {
        let _permit = self.permits.clone().acquire_owned().await;
        tokio::task::spawn_blocking(move || {
            let (phc, real) = match &stored {
                Some(hash) => (hash.as_str(), true),
                None => (decoy_hash()?, false),
            };
            let parsed = argon2::PasswordHash::new(phc)
                .map_err(|e| anyhow::anyhow!("a stored password hash is unreadable: {e}"))?;
            let matches = Argon2::default()
                .verify_password(password.bytes(), &parsed)
                .is_ok();
            Ok(real && matches)
        })
        .await
        .map_err(|e| anyhow::anyhow!("password check task: {e}"))?
    }

    fn locked(&self, user: &MerchantUserId, now: i64) -> bool {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        matches!(map.get(user), Some(&(n, since)) if n >= MAX_FAILURES && now - since < FAILURE_WINDOW_MS)
    }

    fn failed(&self, user: &MerchantUserId, now: i64) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= 10_000 {
            map.retain(|_, (_, since)| now - *since < FAILURE_WINDOW_MS);
        }
        let entry = map.entry(user.clone()).or_insert((0, now));
        if now - entry.1 >= FAILURE_WINDOW_MS {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    fn succeeded(&self, user: &MerchantUserId) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(user);
    }
}

impl Shop {
    /// A new shopper: the user and its password hash, stored together.
    pub async fn sign_up(&self, new: NewUser, password: Password) -> ShopResult<User> {
        let hash = self.passwords.hash(password).await?;
        let user = new.into_user();
        match self.store.insert_user_with_password(&user, &hash).await {
            Ok(()) => {
                tracing::info!(user_id = %user.id, "shopper signed up");
                Ok(user)
            }
            Err(StoreError::Conflict(_)) => Err(ShopError::UserExists),
            Err(e) => Err(e.into()),
        }
    }

    /// The shopper whose name and password these are. Every failure is the
    /// same `WrongCredentials` (no user, no password, a wrong one) and
    /// takes as long; after 10 failures for one name in 15 minutes, that
    /// name is refused (`TooManyAttempts`) until the window ends.
    pub async fn sign_in(&self, id: &MerchantUserId, password: Password) -> ShopResult<User> {
        let now = now_ms();
        if self.passwords.locked(id, now) {
            return Err(ShopError::TooManyAttempts);
        }
        let stored = self.store.password_hash(id).await?;
        if !self.passwords.verify(password, stored).await? {
            self.passwords.failed(id, now);
            tracing::info!(user_id = %id, "failed sign-in");
            return Err(ShopError::WrongCredentials);
        }
        self.passwords.succeeded(id);
        self.user(id).await
    }

    /// Sets a user's password (e.g. a demo user made over the gRPC API).
    pub async fn set_password(&self, id: &MerchantUserId, password: Password) -> ShopResult<()> {
        let hash = self.passwords.hash(password).await?;
        if !self.store.set_password_hash(id, &hash).await? {
            return Err(ShopError::UserNotFound);
        }
        Ok(())
    }

    /// How binding pages are shown to this shopper from now on.
    pub async fn set_presentation(
        &self,
        id: &MerchantUserId,
        presentation: Presentation,
    ) -> ShopResult<()> {
        if !self.store.set_page_presentation(id, presentation).await? {
            return Err(ShopError::UserNotFound);
        }
        Ok(())
    }

    /// One of the shopper's own orders: anyone else's is `OrderNotFound`,
    /// as if it did not exist.
    pub async fn order_of(&self, user_id: &MerchantUserId, id: &OrderId) -> ShopResult<Order> {
        match self.order(id).await {
            Ok(order) if &order.user_id == user_id => Ok(order),
            Ok(_) => Err(ShopError::OrderNotFound),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_have_a_length_and_never_print() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        let p = Password::parse("correct horse").expect("valid");
        assert_eq!(format!("{p:?}"), "Password(***)");
        // Characters, not bytes: eight Chinese characters are enough.
        assert!(Password::parse("八个汉字的密码好").is_ok());
    }

    #[tokio::test]
    async fn a_hash_checks_its_password_only() {
        let passwords = Passwords::default();
        let right = Password::parse("correct horse").expect("valid");
        let wrong = Password::parse("battery staple").expect("valid");
        let hash = passwords.hash(right.clone()).await.expect("hash");
        assert!(hash.as_str().starts_with("$argon2id$"));
        assert!(passwords
            .verify(right.clone(), Some(hash.clone()))
            .await
            .expect("verify"));
        assert!(!passwords.verify(wrong, Some(hash)).await.expect("verify"));
        assert!(!passwords.verify(right, None).await.expect("decoy"));
    }

    #[test]
    fn failures_lock_a_name_for_a_window() {
        let passwords = Passwords::default();
        let alice = MerchantUserId::parse("alice").expect("id");
        for _ in 0..MAX_FAILURES {
            assert!(!passwords.locked(&alice, 1_000));
            passwords.failed(&alice, 1_000);
        }
        assert!(passwords.locked(&alice, 1_000));
        assert!(!passwords.locked(&alice, 1_000 + FAILURE_WINDOW_MS));
        passwords.succeeded(&alice);
        assert!(!passwords.locked(&alice, 1_000));
    }
}

//! The shopper's side of their bindings, at the payment institution: a
//! shopper proves control of a phone number with a one-time code, sees every
//! binding made under that number at every merchant, and ends any of them.
//! The merchant learns of it through the event feed (`BINDING_REVOKED`,
//! revoked by the shopper); the token stops paying at once, because paying
//! checks the binding's status in the same statement that records the
//! payment.
//!
//! A sign-in is a random secret the browser keeps (in a cookie); the store
//! holds only its keyed hash, and the code only as a keyed hash bound to
//! the sign-in. Codes sent and tried count against the same per-phone
//! velocity limits as the binding page's.
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use paybind_shared::{clock::now_ms, ids::BindingId, person::Phone};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{
    error::{DomainError, DomainResult},
    events::RevokedBy,
    model::Binding,
    otp,
    velocity::Counter,
    Services,
};

/// How long a signed-in shopper may manage their bindings.
pub const SIGNED_IN_MS: i64 = 15 * 60 * 1000;

/// Where a sign-in is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginState {
    /// A code went to the phone; not signed in yet.
    AwaitingCode {
        code_hash: String,
        code_expires_ms: i64,
        tries_left: u32,
    },
    SignedIn,
}

/// A sign-in to the shopper's page, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopperLogin {
    /// The keyed hash of the browser's secret.
    pub id_hash: String,
    pub phone: Phone,
    pub state: LoginState,
    pub created_ms: i64,
    pub expires_ms: i64,
}

/// The secret a browser holds for its sign-in: 256 random bits, URL-safe
/// base64. Printed masked.
pub struct LoginSecret(Zeroizing<String>);

impl LoginSecret {
    fn generate() -> Self {
        Self(Zeroizing::new(
            URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()),
        ))
    }

    /// A value from a cookie: anything but the right length and alphabet is
    /// no sign-in at all.
    pub fn from_cookie(raw: &str) -> Option<Self> {
        (raw.len() == 43
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| Self(Zeroizing::new(raw.to_owned())))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for LoginSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginSecret(***)")
    }
}

/// A binding as its shopper sees it: with the merchant's name.
#[derive(Debug, Clone)]
pub struct ShopperBinding {
    pub binding: Binding,
    pub merchant_name: String,
}

/// What a code check came to.
#[derive(Debug)]
pub enum CodeCheck {
    /// Right: signed in under a new secret (the one the code was sent under
    /// is dropped, so a secret planted in the browser before is worthless).
    SignedIn(LoginSecret),
    /// Signed in already.
    AlreadySignedIn,
    /// Wrong; this many tries are left (none: send a new code).
    Wrong { tries_left: u32 },
    /// Too late, or no code outstanding: send a new one.
    Expired,
}

impl Services {
    fn login_hash(&self, secret: &LoginSecret) -> String {
        self.otp_hasher
            .mac_hex(&[b"paybind/my-bindings/login/v1", secret.expose().as_bytes()])
    }

    fn login_code_hash(&self, id_hash: &str, code: &str) -> String {
        self.otp_hasher.mac_hex(&[
            b"paybind/my-bindings/code/v1",
            id_hash.as_bytes(),
            code.trim().as_bytes(),
        ])
    }

    /// Starts a sign-in for `phone` and sends it a one-time code; the
    /// secret goes to the browser. The code goes only to a number with a
    /// binding (no SMS to numbers picked at random), but the answer is the
    /// same either way: whether a number has bindings is not said.
    pub async fn send_shopper_code(&self, phone: Phone) -> DomainResult<LoginSecret> {
        let phone_key = self.phone_key(phone.e164());
        // Per phone, and for the page as a whole (under the per-merchant
        // code limit, the page counting as one merchant).
        self.take_allowances(&[
            (Counter::CodesPerPhone, &phone_key),
            (Counter::CodesPerMerchant, "payment-institution/my-bindings"),
        ])
        .await?;
        let secret = LoginSecret::generate();
        let id_hash = self.login_hash(&secret);
        let code = otp::generate();
        let now = now_ms();
        let login = ShopperLogin {
            state: LoginState::AwaitingCode {
                code_hash: self.login_code_hash(&id_hash, &code),
                code_expires_ms: now + otp::CODE_TTL_MS,
                tries_left: otp::MAX_TRIES,
            },
            id_hash,
            phone: phone.clone(),
            created_ms: now,
            expires_ms: now + otp::CODE_TTL_MS,
        };
        self.store.insert_shopper_login(&login).await?;
        if self
            .store
            .active_bindings_by_phone(&phone)
            .await?
            .is_empty()
        {
            tracing::info!("a code asked for a number with no binding; none sent");
            return Ok(secret);
        }
        let text = format!(
            "[paybind] {} is your code to manage the cards bound to this number. \
             It expires in 5 minutes. Never share it.",
            code.as_str()
        );
        self.sms.send(&phone, &text).await.map_err(|e| {
            tracing::error!(error = %e, "could not send the shopper's code");
            DomainError::SmsUnavailable
        })?;
        Ok(secret)
    }

    /// The sign-in a browser's secret names, while it lasts.
    pub async fn shopper_login(&self, secret: &LoginSecret) -> DomainResult<Option<ShopperLogin>> {
        let login = self.store.shopper_login(&self.login_hash(secret)).await?;
        Ok(login.filter(|l| l.expires_ms > now_ms()))
    }

    /// Checks a code for a sign-in awaiting one.
    pub async fn verify_shopper_code(
        &self,
        login: &ShopperLogin,
        code: &str,
    ) -> DomainResult<CodeCheck> {
        let LoginState::AwaitingCode {
            code_hash,
            code_expires_ms,
            tries_left,
        } = &login.state
        else {
            return Ok(CodeCheck::AlreadySignedIn);
        };
        let now = now_ms();
        if *code_expires_ms <= now || *tries_left == 0 {
            return Ok(CodeCheck::Expired);
        }
        let phone_key = self.phone_key(login.phone.e164());
        self.take_allowances(&[(Counter::CodeTriesPerPhone, &phone_key)])
            .await?;
        let candidate = self.login_code_hash(&login.id_hash, code);
        let right = bool::from(candidate.as_bytes().ct_eq(code_hash.as_bytes()));
        let mut next = login.clone();
        let check = if right {
            let fresh = LoginSecret::generate();
            next.id_hash = self.login_hash(&fresh);
            next.state = LoginState::SignedIn;
            next.expires_ms = now + SIGNED_IN_MS;
            CodeCheck::SignedIn(fresh)
        } else {
            let left = tries_left.saturating_sub(1);
            next.state = LoginState::AwaitingCode {
                code_hash: code_hash.clone(),
                code_expires_ms: *code_expires_ms,
                tries_left: left,
            };
            CodeCheck::Wrong { tries_left: left }
        };
        // Conditional on the tries left as read: two tries at once cannot
        // both use the same one.
        if !self
            .store
            .update_shopper_login(&next, &login.id_hash, *tries_left)
            .await?
        {
            return Ok(CodeCheck::Wrong {
                tries_left: tries_left.saturating_sub(1),
            });
        }
        if let CodeCheck::SignedIn(_) = check {
            tracing::info!("shopper signed in to manage their bindings");
        }
        Ok(check)
    }

    /// Ends a sign-in on the server (the browser drops its cookie too).
    pub async fn sign_out_shopper(&self, secret: &LoginSecret) -> DomainResult<()> {
        Ok(self
            .store
            .delete_shopper_login(&self.login_hash(secret))
            .await?)
    }

    /// Every active binding under the signed-in phone, newest first.
    pub async fn shopper_bindings(
        &self,
        login: &ShopperLogin,
    ) -> DomainResult<Vec<ShopperBinding>> {
        if login.state != LoginState::SignedIn {
            return Ok(Vec::new());
        }
        let bindings = self.store.active_bindings_by_phone(&login.phone).await?;
        let mut shown = Vec::with_capacity(bindings.len());
        for binding in bindings {
            let merchant_name = match self.store.get_merchant(&binding.merchant_id).await? {
                Some(m) => m.display_name,
                None => binding.merchant_id.to_string(),
            };
            shown.push(ShopperBinding {
                binding,
                merchant_name,
            });
        }
        Ok(shown)
    }

    /// Ends one of the signed-in shopper's bindings; `None` if it is not
    /// theirs (or not active any more).
    pub async fn end_binding_as_shopper(
        &self,
        login: &ShopperLogin,
        binding_id: &BindingId,
    ) -> DomainResult<Option<Binding>> {
        if login.state != LoginState::SignedIn {
            return Ok(None);
        }
        let mine = self
            .store
            .active_bindings_by_phone(&login.phone)
            .await?
            .into_iter()
            .find(|b| &b.id == binding_id);
        let Some(mine) = mine else {
            return Ok(None);
        };
        let binding = self
            .store
            .revoke_binding(
                &mine.merchant_id,
                binding_id,
                RevokedBy::Shopper,
                "ended by the shopper at the payment institution",
                now_ms(),
            )
            .await?;
        self.events_written();
        if let Some(b) = &binding {
            tracing::info!(binding_id = %b.id, merchant_id = %b.merchant_id, "binding ended by the shopper");
        }
        Ok(binding)
    }
}

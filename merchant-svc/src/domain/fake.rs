//! A payment-svc in memory, for the shop's own tests: sessions that the
//! test ends as it likes, token payments within a per-payment limit,
//! refunds, bindings. Idempotent like the real one (same key, same answer).
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex,
    },
};

use async_trait::async_trait;
use paybind_shared::{
    ids::{BindingId, BindingToken, MerchantUserId, PaymentId, SessionId},
    model::{BindingStatus, CardBrand, CardExpiry, PaymentStatus, SessionStatus},
    money::{Currency, Money},
};

use super::payment::{
    BindingInfo, BindingRequest, FeedEvent, FeedItem, FeedStream, LimitsToday, PaymentError,
    PaymentGateway, PaymentInfo, PaymentResult, RefundRequest, Refusal, RefusalKind, SessionInfo,
    ShopperEntry, TokenPayment,
};

/// The page origin the fake's sessions have.
pub const PAGE_ORIGIN: &str = "http://pay.test:8081";

/// The fake's auth-free limit per payment (the demo shop's: 500.00 CNY).
pub const PER_PAYMENT_MINOR: i64 = 50_000;

struct FakeSession {
    info: SessionInfo,
    user_id: MerchantUserId,
    purchase: Option<Money>,
}

#[derive(Default)]
struct State {
    sessions: HashMap<SessionId, FakeSession>,
    session_by_key: HashMap<String, SessionId>,
    payments: HashMap<String, PaymentInfo>,
    refunds: HashMap<String, PaymentInfo>,
    bindings: HashMap<MerchantUserId, Vec<BindingInfo>>,
    /// The feed: an event's cursor is its position, from 1.
    events: Vec<FeedEvent>,
}

#[derive(Default)]
pub struct FakePayments {
    state: Mutex<State>,
    /// GetSession calls so far.
    pub session_reads: AtomicUsize,
}

fn refused(reason: &str) -> PaymentError {
    PaymentError::Refused(Refusal {
        kind: RefusalKind::FailedPrecondition,
        reason: reason.to_owned(),
        message: format!("refused: {reason}"),
        metadata: Default::default(),
        violations: Vec::new(),
        retry_after: None,
    })
}

fn cny(minor: i64) -> Money {
    Currency::parse("CNY")
        .and_then(|c| Money::new(minor, c))
        .expect("CNY amount")
}

impl FakePayments {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shopper finished the page: the card is bound (Visa 4242) and,
    /// for BindAndPay, paid.
    pub fn complete(&self, session_id: &SessionId) {
        let mut state = self.state();
        let Some(session) = state.sessions.get_mut(session_id) else {
            panic!("no session {session_id}");
        };
        let binding = BindingInfo {
            id: BindingId::from_raw(&rand::random()),
            token: BindingToken::from_trusted(format!(
                "pbt_{}",
                hex::encode(rand::random::<[u8; 8]>())
            )),
            status: BindingStatus::Active,
            brand: CardBrand::Visa,
            last4: "4242".into(),
            expiry: CardExpiry {
                month: 12,
                year: 2030,
            },
            limits: Some(LimitsToday {
                per_payment: cny(PER_PAYMENT_MINOR),
                per_day: cny(200_000),
                remaining_today: 200_000,
            }),
        };
        session.info.status = SessionStatus::Completed;
        session.info.binding = Some(binding.clone());
        session.info.payment = session.purchase.map(|_| PaymentInfo {
            id: PaymentId::generate(),
            status: PaymentStatus::Succeeded,
            decline_reason: String::new(),
            refunded_minor: 0,
        });
        let user = session.user_id.clone();
        state.bindings.entry(user).or_default().push(binding);
    }

    /// The session ended without a binding.
    pub fn end(&self, session_id: &SessionId, status: SessionStatus) {
        if let Some(session) = self.state().sessions.get_mut(session_id) {
            session.info.status = status;
        }
    }

    /// Adds an event to the feed with the next cursor; returns it.
    pub fn publish(&self, mut event: FeedEvent) -> FeedEvent {
        let mut state = self.state();
        event.cursor = (state.events.len() + 1).to_string();
        state.events.push(event.clone());
        event
    }

    pub fn reads(&self) -> usize {
        self.session_reads.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl PaymentGateway for FakePayments {
    async fn open_session(&self, request: BindingRequest) -> PaymentResult<SessionInfo> {
        let mut state = self.state();
        let key = request.idempotency_key.as_str().to_owned();
        if let Some(id) = state.session_by_key.get(&key) {
            return Ok(state.sessions[id].info.clone());
        }
        let id = SessionId::generate();
        let info = SessionInfo {
            id: id.clone(),
            status: SessionStatus::Open,
            page_url: format!("{PAGE_ORIGIN}/bind/{id}"),
            expire_ms: paybind_shared::clock::now_ms() + 900_000,
            code_sent_to: String::new(),
            binding: None,
            payment: None,
        };
        state.sessions.insert(
            id.clone(),
            FakeSession {
                info: info.clone(),
                user_id: request.user_id,
                purchase: request.purchase.map(|p| p.amount),
            },
        );
        state.session_by_key.insert(key, id);
        Ok(info)
    }

    async fn get_session(&self, session_id: &SessionId) -> PaymentResult<SessionInfo> {
        self.session_reads.fetch_add(1, Ordering::SeqCst);
        let state = self.state();
        let session = state
            .sessions
            .get(session_id)
            .ok_or_else(|| refused("SESSION_NOT_FOUND"))?;
        let mut info = session.info.clone();
        // The binding as it is now (revoked since, maybe).
        if let Some(b) = info.binding.as_mut() {
            let now = state
                .bindings
                .get(&session.user_id)
                .and_then(|all| all.iter().find(|x| x.id == b.id));
            if let Some(now) = now {
                b.status = now.status;
            }
        }
        Ok(info)
    }

    async fn submit_entry(&self, _: &SessionId, _: ShopperEntry) -> PaymentResult<SessionInfo> {
        Err(PaymentError::Unavailable)
    }

    async fn verify_code(&self, _: &SessionId, _: &str) -> PaymentResult<SessionInfo> {
        Err(PaymentError::Unavailable)
    }

    async fn pay(&self, payment: TokenPayment) -> PaymentResult<PaymentInfo> {
        let mut state = self.state();
        let key = payment.idempotency_key.as_str().to_owned();
        if let Some(done) = state.payments.get(&key) {
            return Ok(done.clone());
        }
        let active = state.bindings.get(&payment.user_id).is_some_and(|b| {
            b.iter()
                .any(|b| b.token == payment.token && b.status == BindingStatus::Active)
        });
        if !active {
            return Err(refused("TOKEN_NOT_FOUND"));
        }
        if payment.amount.amount_minor() > PER_PAYMENT_MINOR {
            return Err(refused("LIMIT_EXCEEDED"));
        }
        let info = PaymentInfo {
            id: PaymentId::generate(),
            status: PaymentStatus::Succeeded,
            decline_reason: String::new(),
            refunded_minor: 0,
        };
        state.payments.insert(key, info.clone());
        Ok(info)
    }

    async fn refund(&self, refund: RefundRequest) -> PaymentResult<PaymentInfo> {
        let mut state = self.state();
        let key = refund.idempotency_key.as_str().to_owned();
        if let Some(done) = state.refunds.get(&key) {
            return Ok(done.clone());
        }
        let refunded: i64 = state
            .refunds
            .values()
            .filter(|p| p.id == refund.payment_id)
            .map(|p| p.refunded_minor)
            .max()
            .unwrap_or(0);
        let info = PaymentInfo {
            id: refund.payment_id,
            status: PaymentStatus::Succeeded,
            decline_reason: String::new(),
            refunded_minor: refunded + refund.amount.amount_minor(),
        };
        state.refunds.insert(key, info.clone());
        Ok(info)
    }

    async fn unbind(
        &self,
        token: &BindingToken,
        user_id: &MerchantUserId,
        _: &str,
    ) -> PaymentResult<()> {
        if let Some(bindings) = self.state().bindings.get_mut(user_id) {
            for b in bindings.iter_mut().filter(|b| &b.token == token) {
                b.status = BindingStatus::Revoked;
            }
        }
        Ok(())
    }

    async fn bindings_of(&self, user_id: &MerchantUserId) -> PaymentResult<Vec<BindingInfo>> {
        Ok(self
            .state()
            .bindings
            .get(user_id)
            .cloned()
            .unwrap_or_default())
    }

    async fn events_after(&self, cursor: &str, page_size: i32) -> PaymentResult<Vec<FeedEvent>> {
        let after = cursor.parse::<usize>().unwrap_or(0);
        let state = self.state();
        Ok(state
            .events
            .iter()
            .skip(after)
            .take(usize::try_from(page_size).unwrap_or(0))
            .cloned()
            .collect())
    }

    async fn follow_events(&self, cursor: &str) -> PaymentResult<FeedStream> {
        use futures::StreamExt;
        let events = self.events_after(cursor, i32::MAX).await?;
        let items = events.into_iter().map(|e| Ok(FeedItem::Event(e)));
        Ok(futures::stream::iter(items)
            .chain(futures::stream::pending())
            .boxed())
    }
}

/// A shop on a fresh SQLite database and a fake payment-svc (CNY).
pub async fn shop() -> (
    std::sync::Arc<super::Shop>,
    std::sync::Arc<FakePayments>,
    tempfile::TempDir,
) {
    use std::sync::Arc;
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = crate::config::Secrets::generate().vault().expect("vault");
    let store = crate::store::connect(
        &format!("sqlite:{}", dir.path().join("merchant.db").display()),
        2,
        Arc::new(vault),
    )
    .await
    .expect("store");
    let payments = Arc::new(FakePayments::default());
    let shop = Arc::new(super::Shop::new(
        store,
        payments.clone(),
        Currency::parse("CNY").expect("CNY"),
        "http://shop.test/".into(),
        paybind_shared::metrics::Metrics::new().batches.clone(),
    ));
    (shop, payments, dir)
}

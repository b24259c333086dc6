//! merchant-svc's client of payment-svc: the [`PaymentGateway`] of the
//! shop's domain, over gRPC. mTLS with the merchant's certificate, a
//! deadline on every call, and retries only where they are safe — every call
//! paybind makes is a read or carries an idempotency key, so a retry after
//! UNAVAILABLE or a deadline cannot charge twice. Wire types stop here:
//! answers become the domain's types, failures a [`PaymentError`].
use std::{future::Future, time::Duration};

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use paybind_proto::payment::v1::{
    self as pb, binding_service_client::BindingServiceClient,
    event_service_client::EventServiceClient,
};
use paybind_shared::telemetry::rpc::{ClientTrace, ClientTraceLayer};
use paybind_shared::{
    ids::{BindingId, BindingToken, MerchantUserId, OrderId, PaymentId, SessionId},
    model::{CardExpiry, PaymentStatus},
    money::Money,
    wire::{
        binding_status_from_wire, card_brand_from_wire, money_to_wire, payment_status_from_wire,
        presentation_to_wire, session_status_from_wire,
    },
};
use tonic::{transport::Channel, Code, Request, Response, Status};
use tonic_types::StatusExt;
use tower::Layer as _;

use crate::{
    config::PaymentSettings,
    domain::{
        feed::FeedChange,
        payment::{
            BindingInfo, BindingRequest, FeedEvent, FeedItem, FeedStream, LimitsToday,
            PaymentError, PaymentGateway, PaymentInfo, PaymentResult, RefundRequest, Refusal,
            RefusalKind, SessionInfo, ShopperEntry, TokenPayment,
        },
    },
};

/// The channel to payment-svc, each call in a client span whose context
/// goes along as `traceparent`: one checkout is one trace.
type Traced = ClientTrace<Channel>;

#[derive(Clone)]
pub struct PaymentClient {
    inner: BindingServiceClient<Traced>,
    /// The event feed, on the same connection.
    events: EventServiceClient<Traced>,
    /// Each try's deadline.
    timeout: Duration,
    attempts: u32,
    /// The deadline of a call with all its tries.
    overall: Duration,
    /// The deadline of a read that only decorates an answer.
    quick: Duration,
}

/// Whether a failed call may be sent again unchanged: it got no answer
/// (unreachable; a deadline, payment-svc's or this client's own, which
/// tonic reports as CANCELLED) or payment-svc asked for a retry (ABORTED).
/// Every call carries an idempotency key or is a read, so a call that did
/// take effect is answered the same way the second time.
pub fn is_retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::Cancelled
    )
}

/// A failed call as the shop's domain sees it.
fn classify(status: Status) -> PaymentError {
    let kind = match status.code() {
        Code::InvalidArgument => RefusalKind::InvalidArgument,
        Code::FailedPrecondition => RefusalKind::FailedPrecondition,
        Code::NotFound => RefusalKind::NotFound,
        Code::AlreadyExists => RefusalKind::AlreadyExists,
        Code::PermissionDenied => RefusalKind::PermissionDenied,
        Code::Unauthenticated => RefusalKind::Unauthenticated,
        Code::OutOfRange => RefusalKind::OutOfRange,
        Code::Unimplemented => RefusalKind::Unimplemented,
        Code::Unavailable => return PaymentError::Unavailable,
        _ => return PaymentError::UnknownOutcome,
    };
    let details = status.get_error_details();
    let (reason, metadata) = match details.error_info() {
        Some(info) => (
            info.reason.clone(),
            info.metadata.clone().into_iter().collect(),
        ),
        None => (String::new(), Default::default()),
    };
    PaymentError::Refused(Refusal {
        kind,
        reason,
        message: status.message().to_owned(),
        metadata,
        violations: details
            .bad_request()
            .map(|b| {
                b.field_violations
                    .iter()
                    .map(|v| (v.field.clone(), v.description.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        retry_after: details.retry_info().and_then(|r| r.retry_delay),
    })
}

/// payment-svc answered with something this build cannot read: the outcome
/// is not known, so nothing is taken as settled.
fn unreadable(what: &str) -> PaymentError {
    tracing::error!(what, "payment-svc sent an answer this build cannot read");
    PaymentError::UnknownOutcome
}

fn ms(t: Option<prost_types::Timestamp>) -> i64 {
    t.map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
        .unwrap_or(0)
}

fn money(m: Option<pb::Money>) -> Option<Money> {
    m.and_then(|m| Money::parse(m.amount_minor, &m.currency).ok())
}

fn binding(b: pb::Binding) -> PaymentResult<BindingInfo> {
    let pb::Binding {
        binding_id,
        binding_token,
        merchant_user_id: _,
        status,
        card,
        limits,
        create_time: _,
        revoke_time: _,
        revoke_reason: _,
        revoked_by: _,
    } = b;
    let card = card.unwrap_or_default();
    let limits = limits.and_then(|l| {
        Some(LimitsToday {
            per_payment: money(l.per_payment)?,
            per_day: money(l.per_day)?,
            remaining_today: l.remaining_today.map(|m| m.amount_minor).unwrap_or(0),
        })
    });
    Ok(BindingInfo {
        id: BindingId::from_stored(binding_id),
        token: BindingToken::from_trusted(binding_token),
        status: binding_status_from_wire(status).ok_or_else(|| unreadable("binding status"))?,
        brand: card_brand_from_wire(card.brand).ok_or_else(|| unreadable("card brand"))?,
        last4: card.last4,
        expiry: CardExpiry {
            month: u8::try_from(card.expiry_month).map_err(|_| unreadable("expiry month"))?,
            year: u16::try_from(card.expiry_year).map_err(|_| unreadable("expiry year"))?,
        },
        limits,
    })
}

fn payment(p: pb::Payment) -> PaymentResult<PaymentInfo> {
    let status = payment_status_from_wire(p.status).ok_or_else(|| unreadable("payment status"))?;
    Ok(PaymentInfo {
        id: PaymentId::from_stored(p.payment_id),
        status,
        decline_reason: if status == PaymentStatus::Declined {
            p.decline_reason
        } else {
            String::new()
        },
        refunded_minor: p.refunded.map(|m| m.amount_minor).unwrap_or(0),
    })
}

fn session(s: Option<pb::BindSession>) -> PaymentResult<SessionInfo> {
    let s = s.ok_or_else(|| unreadable("no session"))?;
    Ok(SessionInfo {
        id: SessionId::from_stored(s.session_id),
        status: session_status_from_wire(s.status).ok_or_else(|| unreadable("session status"))?,
        page_url: s.binding_page_url,
        expire_ms: ms(s.expire_time),
        code_sent_to: s.code_sent_to,
        binding: s.binding.map(binding).transpose()?,
        payment: s.payment.map(payment).transpose()?,
    })
}

/// An event of the feed; one this build cannot read is recorded as
/// `Nothing` (a new kind of event must not stop the feed).
/// An event as payment-svc sends it (read from the feed, or pushed to the
/// shop's `NotificationService`), in the shop's terms.
pub fn feed_event(e: pb::Event) -> PaymentResult<FeedEvent> {
    let pb::Event {
        event_id,
        r#type,
        cursor,
        resource_id,
        resource_version,
        occur_time: _,
        resource,
    } = e;
    let event_type = pb::EventType::try_from(r#type).unwrap_or(pb::EventType::Unspecified);
    let change = match (event_type, resource) {
        (pb::EventType::BindingRevoked, Some(pb::event::Resource::Binding(b))) => {
            FeedChange::BindingRevoked {
                binding_id: BindingId::from_stored(b.binding_id),
                user_id: MerchantUserId::from_stored(b.merchant_user_id),
            }
        }
        (
            pb::EventType::PaymentSucceeded | pb::EventType::PaymentDeclined,
            Some(pb::event::Resource::Payment(p)),
        ) => {
            let order_id = OrderId::from_stored(p.merchant_order_id.clone());
            let bind_and_pay = p.shopper_authenticated;
            match payment(p) {
                Ok(payment) => FeedChange::PaymentSettled {
                    order_id,
                    payment,
                    bind_and_pay,
                },
                // Recorded and passed over: one event this build cannot
                // read must not stop the feed (the settler still asks).
                Err(_) => FeedChange::Nothing,
            }
        }
        (
            pb::EventType::BindSessionCompleted
            | pb::EventType::BindSessionFailed
            | pb::EventType::BindSessionExpired,
            Some(pb::event::Resource::BindSession(s)),
        ) => FeedChange::SessionEnded {
            session_id: SessionId::from_stored(s.session_id),
        },
        _ => FeedChange::Nothing,
    };
    if event_id.is_empty() || cursor.is_empty() {
        return Err(unreadable("event without id or cursor"));
    }
    Ok(FeedEvent {
        id: event_id,
        event_type: if event_type == pb::EventType::Unspecified {
            format!("EVENT_TYPE_{type}", type = r#type)
        } else {
            event_type.as_str_name().to_owned()
        },
        cursor,
        resource_id,
        version: resource_version,
        change,
    })
}

impl PaymentClient {
    /// Connects lazily: merchant-svc starts (and queues orders) even while
    /// payment-svc is down.
    pub fn new(settings: &PaymentSettings) -> anyhow::Result<Self> {
        let tls = settings.tls.client_config(&settings.server_name)?;
        let channel = Channel::from_shared(settings.endpoint.clone())?
            .tls_config(tls)?
            .connect_timeout(Duration::from_millis(settings.timeout_ms))
            .tcp_nodelay(true)
            .connect_lazy();
        let traced = ClientTraceLayer.layer(channel);
        Ok(Self {
            events: EventServiceClient::new(traced.clone()),
            inner: BindingServiceClient::new(traced),
            timeout: Duration::from_millis(settings.timeout_ms),
            attempts: settings.attempts.max(1),
            overall: Duration::from_millis(settings.overall_timeout_ms),
            quick: Duration::from_millis(settings.quick_timeout_ms),
        })
    }

    /// Sends a call, and again after a failure without an answer, with
    /// jittered exponential pauses, within the overall deadline.
    async fn call<T, R, F, Fut>(
        &self,
        method: &'static str,
        request: T,
        send: F,
    ) -> PaymentResult<R>
    where
        T: Clone,
        F: Fn(BindingServiceClient<Traced>, Request<T>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(2))
            .with_max_times(self.attempts.saturating_sub(1) as usize)
            .with_jitter();
        let tries = (|| async {
            let mut req = Request::new(request.clone());
            req.set_timeout(self.timeout);
            send(self.inner.clone(), req).await
        })
        .retry(backoff)
        .when(is_retryable)
        .notify(|status: &Status, pause| {
            tracing::warn!(method, code = ?status.code(), ?pause, "payment-svc call failed without an answer; trying again");
        });
        match tokio::time::timeout(self.overall, tries).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(classify(status)),
            Err(_) => {
                tracing::warn!(method, overall = ?self.overall, "payment-svc did not answer within the overall deadline");
                Err(PaymentError::UnknownOutcome)
            }
        }
    }
}

#[async_trait]
impl PaymentGateway for PaymentClient {
    async fn open_session(&self, r: BindingRequest) -> PaymentResult<SessionInfo> {
        let presentation = presentation_to_wire(r.presentation) as i32;
        let prefill = Some(pb::ShopperPrefill {
            full_name: r.prefill.full_name,
            phone: r.prefill.phone,
        });
        let user = r.user_id.into_string();
        let key = r.idempotency_key.as_str().to_owned();
        match r.purchase {
            None => {
                let request = pb::BindRequest {
                    merchant_user_id: user,
                    presentation,
                    return_url: r.return_url,
                    prefill,
                    idempotency_key: key,
                };
                let answer = self
                    .call("Bind", request, |mut c, r| async move { c.bind(r).await })
                    .await?;
                session(answer.session)
            }
            Some(p) => {
                let request = pb::BindAndPayRequest {
                    merchant_user_id: user,
                    presentation,
                    return_url: r.return_url,
                    prefill,
                    payment: Some(pb::PaymentDetails {
                        merchant_order_id: p.order_id.into_string(),
                        amount: Some(money_to_wire(p.amount)),
                        description: p.description,
                    }),
                    idempotency_key: key,
                };
                let answer = self
                    .call("BindAndPay", request, |mut c, r| async move {
                        c.bind_and_pay(r).await
                    })
                    .await?;
                session(answer.session)
            }
        }
    }

    async fn get_session(&self, session_id: &SessionId) -> PaymentResult<SessionInfo> {
        let request = pb::GetBindSessionRequest {
            session_id: session_id.as_str().to_owned(),
        };
        let answer = self
            .call("GetBindSession", request, |mut c, r| async move {
                c.get_bind_session(r).await
            })
            .await?;
        session(answer.session)
    }

    async fn submit_entry(
        &self,
        session_id: &SessionId,
        e: ShopperEntry,
    ) -> PaymentResult<SessionInfo> {
        let request = pb::SubmitBindInfoRequest {
            session_id: session_id.as_str().to_owned(),
            shopper: Some(pb::ShopperInfo {
                full_name: e.full_name,
                id_number: e.id_number,
                phone: e.phone,
            }),
            card: Some(pb::CardInfo {
                number: e.card_number,
                expiry_month: e.expiry_month,
                expiry_year: e.expiry_year,
                cvv: e.cvv,
            }),
        };
        let answer = self
            .call("SubmitBindInfo", request, |mut c, r| async move {
                c.submit_bind_info(r).await
            })
            .await?;
        session(answer.session)
    }

    async fn verify_code(&self, session_id: &SessionId, code: &str) -> PaymentResult<SessionInfo> {
        // Not retried on a deadline: a wrong code would be counted twice.
        // VerifyBind on a completed session returns it, so the caller may
        // simply complete the session afterwards.
        let mut request = Request::new(pb::VerifyBindRequest {
            session_id: session_id.as_str().to_owned(),
            code: code.to_owned(),
        });
        request.set_timeout(self.timeout);
        let answer = self
            .inner
            .clone()
            .verify_bind(request)
            .await
            .map_err(classify)?;
        session(answer.into_inner().session)
    }

    async fn pay(&self, p: TokenPayment) -> PaymentResult<PaymentInfo> {
        let request = pb::PayRequest {
            binding_token: p.token.expose().to_owned(),
            merchant_user_id: p.user_id.into_string(),
            merchant_order_id: p.order_id.into_string(),
            amount: Some(money_to_wire(p.amount)),
            description: p.description,
            idempotency_key: p.idempotency_key.as_str().to_owned(),
        };
        let answer = self
            .call("Pay", request, |mut c, r| async move { c.pay(r).await })
            .await?;
        payment(answer.payment.ok_or_else(|| unreadable("no payment"))?)
    }

    async fn refund(&self, r: RefundRequest) -> PaymentResult<PaymentInfo> {
        let request = pb::RefundRequest {
            payment_id: r.payment_id.into_string(),
            amount: Some(money_to_wire(r.amount)),
            reason: r.reason,
            idempotency_key: r.idempotency_key.as_str().to_owned(),
        };
        let answer = self
            .call(
                "Refund",
                request,
                |mut c, r| async move { c.refund(r).await },
            )
            .await?;
        payment(answer.payment.ok_or_else(|| unreadable("no payment"))?)
    }

    async fn unbind(
        &self,
        token: &BindingToken,
        user_id: &MerchantUserId,
        reason: &str,
    ) -> PaymentResult<()> {
        let request = pb::UnbindRequest {
            binding_token: token.expose().to_owned(),
            merchant_user_id: user_id.as_str().to_owned(),
            reason: reason.to_owned(),
        };
        self.call(
            "Unbind",
            request,
            |mut c, r| async move { c.unbind(r).await },
        )
        .await?;
        Ok(())
    }

    async fn bindings_of(&self, user_id: &MerchantUserId) -> PaymentResult<Vec<BindingInfo>> {
        // Only decorates an answer: one quick try, never the full deadline.
        let mut request = Request::new(pb::ListBindingsRequest {
            merchant_user_id: user_id.as_str().to_owned(),
            page_size: 100,
            page_token: String::new(),
            include_revoked: true,
        });
        request.set_timeout(self.quick);
        let answer = tokio::time::timeout(self.quick, self.inner.clone().list_bindings(request))
            .await
            .map_err(|_| PaymentError::UnknownOutcome)?
            .map_err(classify)?;
        answer
            .into_inner()
            .bindings
            .into_iter()
            .map(binding)
            .collect()
    }

    async fn events_after(&self, cursor: &str, page_size: i32) -> PaymentResult<Vec<FeedEvent>> {
        let mut request = Request::new(pb::ListEventsRequest {
            after_cursor: cursor.to_owned(),
            page_size,
        });
        request.set_timeout(self.timeout);
        let answer = tokio::time::timeout(self.overall, self.events.clone().list_events(request))
            .await
            .map_err(|_| PaymentError::UnknownOutcome)?
            .map_err(classify)?;
        answer
            .into_inner()
            .events
            .into_iter()
            .map(feed_event)
            .collect()
    }

    async fn follow_events(&self, cursor: &str) -> PaymentResult<FeedStream> {
        use futures::StreamExt;
        // No deadline: the stream lives until it breaks or is dropped.
        let request = Request::new(pb::StreamEventsRequest {
            after_cursor: cursor.to_owned(),
        });
        let opened = tokio::time::timeout(self.overall, self.events.clone().stream_events(request))
            .await
            .map_err(|_| PaymentError::UnknownOutcome)?
            .map_err(classify)?;
        Ok(opened
            .into_inner()
            .map(|item| match item {
                Ok(pb::StreamEventsResponse {
                    item: Some(pb::stream_events_response::Item::Event(e)),
                }) => feed_event(e).map(FeedItem::Event),
                Ok(_) => Ok(FeedItem::Heartbeat),
                Err(status) => Err(classify(status)),
            })
            .boxed())
    }
}

//! merchant-svc's client of payment-svc: mTLS with the merchant's
//! certificate, a deadline on every call, and retries only where they are
//! safe — every call paybind makes is a read or carries an idempotency key,
//! so a retry after UNAVAILABLE or a deadline cannot charge twice.
use std::{future::Future, time::Duration};

use paybind_proto::payment::v1::{self as pb, binding_service_client::BindingServiceClient};
use tonic::{transport::Channel, Code, Request, Response, Status};

use crate::config::PaymentSettings;

#[derive(Clone)]
pub struct PaymentClient {
    inner: BindingServiceClient<Channel>,
    timeout: Duration,
    attempts: u32,
}

/// Whether a failed call may be sent again unchanged.
pub fn is_retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted
    )
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
        Ok(Self {
            inner: BindingServiceClient::new(channel),
            timeout: Duration::from_millis(settings.timeout_ms),
            attempts: settings.attempts.max(1),
        })
    }

    async fn call<T, R, F, Fut>(
        &self,
        method: &'static str,
        request: T,
        send: F,
    ) -> Result<R, Status>
    where
        T: Clone,
        F: Fn(BindingServiceClient<Channel>, Request<T>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            let mut req = Request::new(request.clone());
            req.set_timeout(self.timeout);
            match send(self.inner.clone(), req).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if is_retryable(&status) && attempt < self.attempts => {
                    tracing::warn!(method, attempt, code = ?status.code(), "payment-svc call failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 3;
                    attempt += 1;
                }
                Err(status) => return Err(status),
            }
        }
    }

    pub async fn bind(&self, r: pb::BindRequest) -> Result<pb::BindResponse, Status> {
        self.call("Bind", r, |mut c, r| async move { c.bind(r).await })
            .await
    }

    pub async fn bind_and_pay(
        &self,
        r: pb::BindAndPayRequest,
    ) -> Result<pb::BindAndPayResponse, Status> {
        self.call("BindAndPay", r, |mut c, r| async move {
            c.bind_and_pay(r).await
        })
        .await
    }

    pub async fn get_bind_session(&self, session_id: &str) -> Result<pb::BindSession, Status> {
        let r = pb::GetBindSessionRequest {
            session_id: session_id.to_owned(),
        };
        self.call("GetBindSession", r, |mut c, r| async move {
            c.get_bind_session(r).await
        })
        .await?
        .session
        .ok_or_else(|| Status::internal("payment-svc returned no session"))
    }

    pub async fn submit_bind_info(
        &self,
        r: pb::SubmitBindInfoRequest,
    ) -> Result<pb::BindSession, Status> {
        self.call("SubmitBindInfo", r, |mut c, r| async move {
            c.submit_bind_info(r).await
        })
        .await?
        .session
        .ok_or_else(|| Status::internal("payment-svc returned no session"))
    }

    pub async fn verify_bind(&self, r: pb::VerifyBindRequest) -> Result<pb::BindSession, Status> {
        // Not retried on a deadline: a wrong code would be counted twice.
        // VerifyBind on a completed session returns it, so the caller may
        // simply complete the session afterwards.
        let mut req = Request::new(r);
        req.set_timeout(self.timeout);
        self.inner
            .clone()
            .verify_bind(req)
            .await?
            .into_inner()
            .session
            .ok_or_else(|| Status::internal("payment-svc returned no session"))
    }

    pub async fn pay(&self, r: pb::PayRequest) -> Result<pb::Payment, Status> {
        self.call("Pay", r, |mut c, r| async move { c.pay(r).await })
            .await?
            .payment
            .ok_or_else(|| Status::internal("payment-svc returned no payment"))
    }

    pub async fn refund(&self, r: pb::RefundRequest) -> Result<pb::RefundResponse, Status> {
        self.call("Refund", r, |mut c, r| async move { c.refund(r).await })
            .await
    }

    pub async fn unbind(&self, r: pb::UnbindRequest) -> Result<pb::Binding, Status> {
        self.call("Unbind", r, |mut c, r| async move { c.unbind(r).await })
            .await?
            .binding
            .ok_or_else(|| Status::internal("payment-svc returned no binding"))
    }

    pub async fn list_bindings(
        &self,
        r: pb::ListBindingsRequest,
    ) -> Result<pb::ListBindingsResponse, Status> {
        self.call("ListBindings", r, |mut c, r| async move {
            c.list_bindings(r).await
        })
        .await
    }
}

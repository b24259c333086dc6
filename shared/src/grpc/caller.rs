//! Who is calling, decided once per request by a tower layer: the verified
//! client certificate's identity is resolved (a registered merchant at
//! payment-svc, an allowed operator at merchant-svc) and put into the
//! request's extensions, where handlers take it with [`caller`]. A request
//! that names no acceptable caller is answered here and never reaches a
//! handler.
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tonic::{server::NamedService, transport::server::TlsConnectInfo, Request, Status};
use tower::{Layer, Service};

use super::conn::GuardedInfo;
use crate::tls::PeerCertificate;

/// Resolves a verified client certificate (`None` without one) to the
/// caller handlers will see, for one method (the last segment of the
/// request's path, e.g. `RefundOrder`): a caller that may not call it is
/// refused here.
pub trait Authenticate: Send + Sync + 'static {
    type Caller: Clone + Send + Sync + 'static;

    fn authenticate(
        &self,
        peer: Option<PeerCertificate>,
        method: &str,
    ) -> impl Future<Output = Result<Self::Caller, Status>> + Send;
}

/// Wraps one gRPC service so that each of its requests carries its caller.
pub struct CallerLayer<A> {
    auth: Arc<A>,
}

impl<A> CallerLayer<A> {
    pub fn new(auth: A) -> Self {
        Self {
            auth: Arc::new(auth),
        }
    }
}

impl<S, A> Layer<S> for CallerLayer<A> {
    type Service = CallerService<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        CallerService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

pub struct CallerService<S, A> {
    inner: S,
    auth: Arc<A>,
}

impl<S: Clone, A> Clone for CallerService<S, A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            auth: self.auth.clone(),
        }
    }
}

impl<S, A, B> Service<http::Request<B>> for CallerService<S, A>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    A: Authenticate,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // rustls verified the chain; what the leaf says is read here. One
        // that cannot be read is treated as no certificate at all.
        let peer = request
            .extensions()
            .get::<TlsConnectInfo<GuardedInfo>>()
            .and_then(|info| info.peer_certs())
            .and_then(|certs| {
                certs
                    .first()
                    .and_then(|leaf| PeerCertificate::from_der(leaf.as_ref()).ok())
            });
        let method = request
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let auth = self.auth.clone();
        // The clone that was made ready is the one that must serve.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        Box::pin(async move {
            match auth.authenticate(peer.clone(), &method).await {
                Ok(caller) => {
                    request.extensions_mut().insert(caller);
                    // For a long call (a stream) to ask again later.
                    if let Some(peer) = peer {
                        request.extensions_mut().insert(peer);
                    }
                    inner.call(request).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

impl<S: NamedService, A> NamedService for CallerService<S, A> {
    const NAME: &'static str = S::NAME;
}

/// The caller the layer resolved for this request.
pub fn caller<C: Clone + Send + Sync + 'static, T>(request: &Request<T>) -> Result<C, Status> {
    request
        .extensions()
        .get::<C>()
        .cloned()
        .ok_or_else(|| Status::internal("the caller layer is not installed"))
}

//! Building and running merchant-svc: its database, its payment-svc client,
//! the settler of pending orders and open sessions, the gRPC server (mTLS,
//! health, reflection) and the storefront (HTTP), in one runtime.
use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use paybind_proto::merchant::v1::{
    merchant_service_server::MerchantServiceServer,
    notification_service_server::NotificationServiceServer,
};
use paybind_shared::{
    grpc::{CallerLayer, MAX_REQUEST_BYTES},
    money::Currency,
    tls::IssuerSet,
};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tower::Layer;

use paybind_shared::metrics::Metrics;

use crate::{
    config::Settings,
    domain::Shop,
    grpc::{
        notifications::{NotificationApi, NotifierAuth},
        MerchantApi, OperatorAuth,
    },
    payment_client::PaymentClient,
    store, web,
};

pub struct App {
    listener: TcpListener,
    grpc_addr: SocketAddr,
    web_listener: TcpListener,
    web_addr: SocketAddr,
    metrics_listener: TcpListener,
    metrics_addr: SocketAddr,
    metrics: Arc<Metrics>,
    storefront: axum::Router,
    settings: Settings,
    shop: Arc<Shop>,
}

impl App {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        if settings.environment.hardened() {
            settings.tls.refuse_development_ca()?;
            settings.payment.tls.refuse_development_ca()?;
        }
        let store = store::connect(
            settings.database.url.expose_secret(),
            settings.database.max_connections,
            Arc::new(settings.secrets.vault()?),
        )
        .await?;
        let mut metrics = Metrics::new();
        let pool = store.clone();
        metrics.watch_pool(move || pool.pool_use());
        let shop = Arc::new(Shop::new(
            store,
            Arc::new(PaymentClient::new(&settings.payment)?),
            Currency::parse(&settings.shop.currency)?,
            settings.shop.default_return_url.clone(),
            metrics.batches.clone(),
        ));
        let listener = TcpListener::bind(settings.grpc.listen).await?;
        let grpc_addr = listener.local_addr()?;
        let web_listener = paybind_shared::web::bind(settings.web.listen, "web.listen").await?;
        let web_addr = web_listener.local_addr()?;
        let storefront = paybind_shared::telemetry::pages::traced(web::router(
            shop.clone(),
            &settings.web,
            web_addr.port(),
        )?);
        let metrics_listener =
            paybind_shared::web::bind(settings.metrics.listen, "metrics.listen").await?;
        let metrics_addr = metrics_listener.local_addr()?;
        Ok(Self {
            listener,
            grpc_addr,
            web_listener,
            web_addr,
            metrics_listener,
            metrics_addr,
            metrics: Arc::new(metrics),
            storefront,
            settings,
            shop,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Where the storefront listens (HTTP).
    pub fn web_addr(&self) -> SocketAddr {
        self.web_addr
    }

    /// Where `GET /metrics` is served.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    pub fn shop(&self) -> Arc<Shop> {
        self.shop.clone()
    }

    /// Serves gRPC and the storefront until `shutdown` resolves (or one of
    /// them fails, which stops the other); the settler runs alongside.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        // Operators' certificates, and payment-svc's for its notifications.
        let payment_ca = &self.settings.payment.tls.ca_cert;
        let tls = self.settings.tls.server_config_also_trusting(payment_ca)?;
        let notifications = CallerLayer::new(NotifierAuth {
            name: self.settings.payment.notifier_name.clone(),
            issuers: IssuerSet::from_pem_file(payment_ca)?,
        })
        .layer(
            NotificationServiceServer::new(NotificationApi::new(self.shop.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        );
        let api = CallerLayer::new(
            OperatorAuth::new(self.settings.environment, &self.settings.operators)
                // Not payment-svc's CA, which this server also trusts.
                .issued_by(IssuerSet::from_pem_file(&self.settings.tls.ca_cert)?),
        )
        .layer(
            MerchantServiceServer::new(MerchantApi::new(self.shop.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        );

        let interval = Duration::from_millis(self.settings.shop.settle_interval_ms);
        let settler_shop = self.shop.clone();
        let settler = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = settler_shop
                    .settle_pending(interval.as_millis() as i64)
                    .await
                {
                    tracing::warn!(error = %e, "settler pass failed");
                }
                if let Err(e) = settler_shop
                    .check_sessions(interval.as_millis() as i64)
                    .await
                {
                    tracing::warn!(error = %e, "session check failed");
                }
            }
        });
        // payment-svc's event feed: caught up from the stored cursor at
        // start, then followed live (and caught up again whenever it breaks).
        let feed_shop = self.shop.clone();
        let feed = tokio::spawn(async move { feed_shop.follow_feed().await });
        tracing::info!(addr = %self.grpc_addr, backend = self.shop.store.backend().name(), "merchant-svc serving gRPC over mTLS");
        tracing::info!(addr = %self.web_addr, "merchant-svc serving the storefront (HTTP)");
        tracing::info!(addr = %self.metrics_addr, "merchant-svc serving /metrics");
        // One stop for both servers: the caller's shutdown, or either one
        // ending on its own (an error), stops the other.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let on_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let grpc_router = paybind_shared::grpc::server_router(
            tls,
            <MerchantServiceServer<MerchantApi> as tonic::server::NamedService>::NAME,
            &self.settings.server,
            self.metrics.rpc.clone(),
        )
        .await?
        .add_service(api)
        .add_service(notifications);
        let grpc = async {
            let served = grpc_router
                .serve_with_incoming_shutdown(
                    paybind_shared::grpc::incoming(self.listener, &self.settings.server),
                    on_stop(stopped.clone()),
                )
                .await;
            let _ = stop.send(true);
            served.map_err(anyhow::Error::from)
        };
        let storefront = async {
            // The gRPC server's connection hygiene, for the pages too.
            paybind_shared::web::serve(
                self.web_listener,
                self.storefront,
                &self.settings.server,
                on_stop(stopped.clone()),
            )
            .await;
            let _ = stop.send(true);
            Ok::<(), anyhow::Error>(())
        };
        let metrics = async {
            paybind_shared::web::serve(
                self.metrics_listener,
                paybind_shared::metrics::router(self.metrics.clone()),
                &self.settings.server,
                on_stop(stopped.clone()),
            )
            .await;
        };
        let both = async { tokio::join!(grpc, storefront, metrics) };
        tokio::pin!(both);
        let (grpc_served, web_served, ()) = tokio::select! {
            served = &mut both => served,
            () = shutdown => {
                let _ = stop.send(true);
                both.await
            }
        };
        settler.abort();
        feed.abort();
        grpc_served?;
        web_served?;
        Ok(())
    }
}

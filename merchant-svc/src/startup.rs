//! Building and running merchant-svc: its database, its payment-svc client,
//! the settler of pending orders, and the gRPC server (mTLS, health,
//! reflection).
use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use paybind_proto::merchant::v1::merchant_service_server::MerchantServiceServer;
use paybind_shared::{
    grpc::{CallerLayer, MAX_REQUEST_BYTES},
    money::Currency,
};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tower::Layer;

use crate::{
    config::Settings,
    domain::Shop,
    grpc::{MerchantApi, OperatorAuth},
    payment_client::PaymentClient,
    store,
};

pub struct App {
    listener: TcpListener,
    grpc_addr: SocketAddr,
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
        let shop = Arc::new(Shop::new(
            store,
            Arc::new(PaymentClient::new(&settings.payment)?),
            Currency::parse(&settings.shop.currency)?,
            settings.shop.default_return_url.clone(),
        ));
        let listener = TcpListener::bind(settings.grpc.listen).await?;
        let grpc_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            grpc_addr,
            settings,
            shop,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn shop(&self) -> Arc<Shop> {
        self.shop.clone()
    }

    /// Serves until `shutdown` resolves; the settler runs alongside.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let tls = self.settings.tls.server_config()?;
        let api = CallerLayer::new(OperatorAuth::new(
            self.settings.environment,
            &self.settings.operators,
        ))
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
            }
        });
        tracing::info!(addr = %self.grpc_addr, backend = self.shop.store.backend().name(), "merchant-svc serving gRPC over mTLS");
        let served = paybind_shared::grpc::server_router(
            tls,
            <MerchantServiceServer<MerchantApi> as tonic::server::NamedService>::NAME,
            &self.settings.server,
        )
        .await?
        .add_service(api)
        .serve_with_incoming_shutdown(
            paybind_shared::grpc::incoming(self.listener, &self.settings.server),
            shutdown,
        )
        .await;
        settler.abort();
        served?;
        Ok(())
    }
}

//! Building and running payment-svc: binds the listener first (port 0 works,
//! for tests), then serves until the shutdown future resolves.
use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use paybind_proto::payment::v1::{
    binding_service_server::BindingServiceServer, event_service_server::EventServiceServer,
};
use paybind_shared::grpc::{CallerLayer, MAX_REQUEST_BYTES};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tower::Layer;

use paybind_shared::{config::Environment, metrics::Metrics, tls::TlsFiles};

use crate::{
    config::Settings,
    domain::{
        acquirer::{Simulator, Traced},
        deliveries::Deliverer,
        merchants::MerchantDirectory,
        metrics::PaymentMetrics,
        sms::{DevOutbox, NoGateway, SmsSender},
        token::TokenCodec,
        vault::{KeyedHasher, Vault},
        Policy, Services,
    },
    grpc::{notify_client::GrpcNotifier, BindingApi, EventApi, MerchantAuth},
    store,
    web::PageState,
};

pub struct App {
    listener: TcpListener,
    grpc_addr: SocketAddr,
    web_listener: TcpListener,
    web_addr: SocketAddr,
    metrics_listener: TcpListener,
    metrics_addr: SocketAddr,
    metrics: Arc<Metrics>,
    /// `public_base_url`, with the web listener's port if it named port 0.
    public_base_url: String,
    settings: Settings,
    services: Arc<Services>,
    outbox: Option<Arc<DevOutbox>>,
    simulator: Arc<Simulator>,
}

impl App {
    /// Connects the database (migrating it), loads the keys and binds the
    /// gRPC listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let simulator = match &settings.acquirer.journal_file {
            Some(path) => Simulator::with_journal(path)?,
            None => Simulator::new(),
        };
        Self::build_with_acquirer(settings, Arc::new(simulator)).await
    }

    /// As `build`, with a given simulated acquirer (tests keep its ledger
    /// across a restart of the service).
    pub async fn build_with_acquirer(
        settings: Settings,
        simulator: Arc<Simulator>,
    ) -> anyhow::Result<Self> {
        if settings.environment.hardened() {
            settings.tls.refuse_development_ca()?;
        }
        let secrets = &settings.secrets;
        let web_listener = paybind_shared::web::bind(settings.web.listen, "web.listen").await?;
        let web_addr = web_listener.local_addr()?;
        let metrics_listener =
            paybind_shared::web::bind(settings.metrics.listen, "metrics.listen").await?;
        let metrics_addr = metrics_listener.local_addr()?;
        let public_base_url = resolve_port(&settings.public_base_url, web_addr.port())?;
        let store = store::connect(
            settings.database.url.expose_secret(),
            settings.database.max_connections,
        )
        .await?;
        let outbox = match settings.sms.provider.as_str() {
            "dev-outbox" => Some(Arc::new(DevOutbox::new(settings.sms.outbox_file.clone()))),
            _ => None,
        };
        let sms: Arc<dyn SmsSender> = match &outbox {
            Some(outbox) => outbox.clone(),
            None => Arc::new(NoGateway),
        };
        let mut metrics = Metrics::new();
        let payment_metrics = PaymentMetrics::register(&mut metrics);
        let pool = store.clone();
        metrics.watch_pool(move || pool.pool_use());
        let (reservations, outcomes) =
            Services::pay_writers(store.clone(), metrics.batches.clone());
        let services = Arc::new(Services {
            merchants: Arc::new(MerchantDirectory::new(
                store.clone(),
                Duration::from_secs(30),
            )),
            reservations,
            outcomes,
            store,
            vault: Vault::new(&secrets.vault_keys, &secrets.active_vault_key)?,
            fingerprints: KeyedHasher::new("secrets.fingerprint_key", &secrets.fingerprint_key)?,
            otp_hasher: KeyedHasher::new("secrets.otp_key", &secrets.otp_key)?,
            tokens: TokenCodec::with_keys(
                secrets
                    .token_keys()?
                    .into_iter()
                    .map(|(id, key)| Ok((id, KeyedHasher::new(&format!("token key {id}"), key)?)))
                    .collect::<anyhow::Result<_>>()?,
                secrets.active_token_key,
            )?,
            acquirer: Arc::new(Traced(simulator.clone())),
            sms,
            in_flight: Default::default(),
            metrics: payment_metrics,
            event_wake: Default::default(),
            policy: Policy {
                utc_offset_minutes: settings.limits.utc_offset_minutes,
                session_ttl_ms: settings.sessions.ttl_secs * 1000,
                max_card_attempts: settings.sessions.max_card_attempts,
                public_base_url: public_base_url.clone(),
                velocity: settings.velocity.clone(),
                resend_interval_ms: i64::from(settings.sessions.resend_interval_secs) * 1000,
            },
        });
        services.rekey_sealed_cards().await?;
        if settings.environment.hardened() {
            // Registered under development rules, perhaps: refused here.
            for m in services.store.list_merchants().await? {
                for url in m.return_urls.iter().chain(&m.allowed_origins) {
                    paybind_shared::config::require_https(
                        settings.environment,
                        &format!("merchant {}'s return URL or origin", m.id),
                        url,
                    )?;
                }
            }
        }
        let listener = TcpListener::bind(settings.grpc.listen).await?;
        let grpc_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            grpc_addr,
            web_listener,
            web_addr,
            metrics_listener,
            metrics_addr,
            metrics: Arc::new(metrics),
            public_base_url,
            settings,
            services,
            outbox,
            simulator,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Where the binding pages are served.
    pub fn web_addr(&self) -> SocketAddr {
        self.web_addr
    }

    /// Where `GET /metrics` is served.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// Where shoppers' browsers reach the binding pages.
    pub fn public_base_url(&self) -> &str {
        &self.public_base_url
    }

    pub fn services(&self) -> Arc<Services> {
        self.services.clone()
    }

    /// The development SMS outbox, when configured.
    pub fn sms_outbox(&self) -> Option<Arc<DevOutbox>> {
        self.outbox.clone()
    }

    /// The simulated acquirer and its ledger.
    pub fn acquirer(&self) -> Arc<Simulator> {
        self.simulator.clone()
    }

    /// Serves gRPC (mTLS, health, reflection) until `shutdown` resolves.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let tls = self.settings.tls.server_config()?;
        let merchant_auth = CallerLayer::new(MerchantAuth(self.services.clone()));
        let api = merchant_auth.layer(
            BindingServiceServer::new(BindingApi::new(self.services.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        );
        let feed = merchant_auth.layer(
            EventServiceServer::new(EventApi::new(self.services.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        );
        tracing::info!(
            addr = %self.grpc_addr,
            backend = self.services.store.backend().name(),
            "payment-svc serving gRPC over mTLS"
        );
        let services = self.services.clone();
        let interval = Duration::from_millis(self.settings.recovery.interval_ms);
        let recovery = tokio::spawn(async move { services.recover_forever(interval).await });
        let merchant_watch = tokio::spawn(self.services.merchants.clone().watch());
        let services = self.services.clone();
        let retention = self.settings.retention.clone();
        let purge = tokio::spawn(async move { services.purge_forever(retention).await });
        let sequencer = tokio::spawn(self.services.clone().sequence_events_forever());
        let expiry = tokio::spawn(self.services.clone().expire_forever());
        let deliverer = tokio::spawn(self.deliverer()?.deliver_forever());
        let page_state = self.page_state()?;
        tracing::info!(addr = %self.web_addr, public = %self.public_base_url, "payment-svc serving the binding pages");
        let pages = HttpServer::spawn(
            self.web_listener,
            paybind_shared::telemetry::pages::traced(crate::web::router(page_state)),
            self.settings.server.clone(),
        );
        tracing::info!(addr = %self.metrics_addr, "payment-svc serving /metrics");
        let metrics = HttpServer::spawn(
            self.metrics_listener,
            paybind_shared::metrics::router(self.metrics.clone()),
            self.settings.server.clone(),
        );
        let served = paybind_shared::grpc::server_router(
            tls,
            <BindingServiceServer<BindingApi> as tonic::server::NamedService>::NAME,
            &self.settings.server,
            self.metrics.rpc.clone(),
        )
        .await?
        .add_service(api)
        .add_service(feed)
        .serve_with_incoming_shutdown(
            paybind_shared::grpc::incoming(self.listener, &self.settings.server),
            {
                // Event streams never end on their own: they are ended
                // first, or the graceful stop would wait for them forever.
                let services = self.services.clone();
                async move {
                    shutdown.await;
                    services.close_event_streams();
                }
            },
        )
        .await;
        recovery.abort();
        merchant_watch.abort();
        purge.abort();
        sequencer.abort();
        expiry.abort();
        deliverer.abort();
        pages.stop().await;
        metrics.stop().await;
        served?;
        Ok(())
    }

    /// Pushes events to merchants with payment-svc's own certificate,
    /// trusting `notifications.ca_cert` (or `tls.ca_cert`) for theirs.
    fn deliverer(&self) -> anyhow::Result<Deliverer> {
        let settings = &self.settings.notifications;
        let tls = TlsFiles {
            ca_cert: settings
                .ca_cert
                .clone()
                .unwrap_or_else(|| self.settings.tls.ca_cert.clone()),
            ..self.settings.tls.clone()
        };
        Ok(Deliverer {
            store: self.services.store.clone(),
            notifier: GrpcNotifier::new(tls)?,
            settings: settings.clone(),
            metrics: self.services.metrics.clone(),
            wake: self.services.events_sequenced(),
        })
    }

    fn page_state(&self) -> anyhow::Result<Arc<PageState>> {
        let origin = url::Url::parse(&self.public_base_url)?
            .origin()
            .ascii_serialization();
        let development = self.settings.environment == Environment::Development;
        Ok(Arc::new(PageState {
            services: self.services.clone(),
            outbox: self.outbox.clone().filter(|_| development),
            public_origin: origin,
        }))
    }
}

/// An HTTP listener (the binding pages, the metrics) served until stopped,
/// with the gRPC server's connection hygiene (`[server]`).
struct HttpServer {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    fn spawn(
        listener: TcpListener,
        router: axum::Router,
        server: paybind_shared::grpc::ServerSettings,
    ) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            paybind_shared::web::serve(listener, router, &server, async {
                let _ = stopped.await;
            })
            .await;
        });
        Self { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        // Requests in flight finish (for a few seconds at most).
        let _ = self.task.await;
    }
}

/// `url` with `port` in place of an explicit port 0 (tests bind port 0
/// and learn the port only then).
fn resolve_port(url: &str, port: u16) -> anyhow::Result<String> {
    let mut parsed = url::Url::parse(url).map_err(|e| anyhow::anyhow!("public_base_url: {e}"))?;
    if parsed.port() == Some(0) {
        parsed
            .set_port(Some(port))
            .map_err(|()| anyhow::anyhow!("public_base_url: cannot set a port"))?;
        return Ok(parsed.as_str().trim_end_matches('/').to_owned());
    }
    Ok(url.to_owned())
}

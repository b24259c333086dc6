//! Building and running payment-svc: binds the listener first (port 0 works,
//! for tests), then serves until the shutdown future resolves.
use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use paybind_proto::payment::v1::binding_service_server::BindingServiceServer;
use paybind_shared::grpc::{CallerLayer, MAX_REQUEST_BYTES};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tower::Layer;

use crate::{
    config::Settings,
    domain::{
        acquirer::Simulator,
        merchants::MerchantDirectory,
        sms::{DevOutbox, NoGateway, SmsSender},
        token::TokenCodec,
        vault::{KeyedHasher, Vault},
        Policy, Services,
    },
    grpc::{BindingApi, MerchantAuth},
    store,
};

pub struct App {
    listener: TcpListener,
    grpc_addr: SocketAddr,
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
        let (reservations, outcomes) = Services::pay_writers(store.clone());
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
            acquirer: simulator.clone(),
            sms,
            in_flight: Default::default(),
            policy: Policy {
                utc_offset_minutes: settings.limits.utc_offset_minutes,
                session_ttl_ms: settings.sessions.ttl_secs * 1000,
                max_card_attempts: settings.sessions.max_card_attempts,
                public_base_url: settings.public_base_url.clone(),
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
            settings,
            services,
            outbox,
            simulator,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
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
        let api = CallerLayer::new(MerchantAuth(self.services.clone())).layer(
            BindingServiceServer::new(BindingApi::new(self.services.clone()))
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
        let served = paybind_shared::grpc::server_router(
            tls,
            <BindingServiceServer<BindingApi> as tonic::server::NamedService>::NAME,
            &self.settings.server,
        )
        .await?
        .add_service(api)
        .serve_with_incoming_shutdown(
            paybind_shared::grpc::incoming(self.listener, &self.settings.server),
            shutdown,
        )
        .await;
        recovery.abort();
        merchant_watch.abort();
        purge.abort();
        served?;
        Ok(())
    }
}

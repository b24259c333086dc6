//! The outcomes the domain counts for payment-svc's metrics, beside the RPC, batch and pool families every
//! service has (`paybind_shared::metrics`): payments by outcome and decline
//! reason, bind sessions opened and ended. Counted where the outcome is
//! written, once: a retry that finds the payment settled counts nothing.
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};

use paybind_shared::metrics::Metrics;

use super::{
    acquirer::DeclineReason,
    deliveries::AttemptOutcome,
    model::{PaymentState, SessionKind},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PaymentLabels {
    /// `succeeded` or `declined`.
    status: &'static str,
    /// The decline reason's code; empty for a success.
    decline_reason: &'static str,
    /// `pay` (a bound card) or `bind_and_pay`.
    flow: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabels {
    kind: &'static str,
    /// `opened`, `bound` or `failed` (out of attempts). A session nobody
    /// finishes expires without a write, and is not counted.
    outcome: &'static str,
}

/// Where a settled payment came from.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Copy)]
pub enum PaymentFlow {
    Pay,
    BindAndPay,
}

#[derive(Clone, Default)]
pub struct PaymentMetrics {
    payments: Family<PaymentLabels, Counter>,
    sessions: Family<SessionLabels, Counter>,
    events_sequenced: Counter,
    event_streams: Gauge,
    delivery_attempts: Family<AttemptLabels, Counter>,
    delivery_backlog: Gauge,
}

impl PaymentMetrics {
    /// Registers the families in `metrics`.
    pub fn register(metrics: &mut Metrics) -> Self {
        let this = Self::default();
        metrics.register(
            "payments",
            "Payments settled, by status, decline reason and flow",
            this.payments.clone(),
        );
        metrics.register(
            "bind_sessions",
            "Bind sessions opened, and ended by outcome, by kind",
            this.sessions.clone(),
        );
        metrics.register(
            "events_sequenced",
            "Feed events written with their cursor (readable by merchants from then on) by this replica",
            this.events_sequenced.clone(),
        );
        metrics.register(
            "event_streams",
            "StreamEvents calls open on this replica",
            this.event_streams.clone(),
        );
        metrics.register(
            "delivery_attempts",
            "Notification attempts made by this replica, by outcome",
            this.delivery_attempts.clone(),
        );
        metrics.register(
            "delivery_backlog",
            "Notifications not yet acknowledged by their merchants (all replicas)",
            this.delivery_backlog.clone(),
        );
        this
    }

    pub fn delivery_attempt(&self, outcome: AttemptOutcome) {
        let outcome = match outcome {
            AttemptOutcome::Acknowledged => "acknowledged",
            AttemptOutcome::Refused => "refused",
            AttemptOutcome::Unreachable => "unreachable",
            AttemptOutcome::TimedOut => "timed_out",
            AttemptOutcome::NoEndpoint => "no_endpoint",
            AttemptOutcome::Abandoned => "abandoned",
        };
        self.delivery_attempts
            .get_or_create(&AttemptLabels { outcome })
            .inc();
    }

    pub fn delivery_backlog(&self, pending: i64) {
        self.delivery_backlog.set(pending);
    }

    pub fn events_sequenced(&self, n: u64) {
        self.events_sequenced.inc_by(n);
    }

    /// One more stream open; the guard counts it closed when dropped.
    pub fn event_stream_opened(&self) -> StreamGuard {
        self.event_streams.inc();
        StreamGuard(self.event_streams.clone())
    }

    /// A payment's final state, written.
    pub fn payment_settled(&self, state: &PaymentState, flow: PaymentFlow) {
        let (status, decline_reason) = match state {
            PaymentState::Pending => return,
            PaymentState::Succeeded { .. } => ("succeeded", ""),
            PaymentState::Declined { reason } => ("declined", DeclineReason::as_str(*reason)),
        };
        let flow = match flow {
            PaymentFlow::Pay => "pay",
            PaymentFlow::BindAndPay => "bind_and_pay",
        };
        self.payments
            .get_or_create(&PaymentLabels {
                status,
                decline_reason,
                flow,
            })
            .inc();
    }

    pub fn session(&self, kind: SessionKind, outcome: &'static str) {
        let kind = match kind {
            SessionKind::Bind => "bind",
            SessionKind::BindAndPay => "bind_and_pay",
        };
        self.sessions
            .get_or_create(&SessionLabels { kind, outcome })
            .inc();
    }
}

/// Counts an open `StreamEvents` until dropped.
pub struct StreamGuard(Gauge);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

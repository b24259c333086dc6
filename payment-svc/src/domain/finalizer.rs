//! Group commit for payment outcomes.
//!
//! Every payment is recorded as PENDING before the acquirer is asked and its
//! outcome written after. Under load, many outcomes arrive at once: they are
//! queued here and written together (one statement on PostgreSQL, one
//! transaction — one fsync — on SQLite), while further outcomes queue for the
//! next batch. Each caller still waits until its own outcome is committed
//! before answering, so nothing is acknowledged that is not durable.
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::error::{DomainError, DomainResult};
use crate::store::{PaymentOutcome, PaymentRow, Store};

/// Largest batch written at once.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<Option<PaymentRow>, String>>;

pub struct Finalizer {
    queue: mpsc::UnboundedSender<(PaymentOutcome, Reply)>,
}

impl Finalizer {
    /// Starts the writer; at most `max_in_flight` batches are written at once.
    pub fn spawn(store: Arc<dyn Store>, max_in_flight: usize) -> Self {
        let (queue, mut incoming) = mpsc::unbounded_channel::<(PaymentOutcome, Reply)>();
        let slots = Arc::new(Semaphore::new(max_in_flight.max(1)));
        tokio::spawn(async move {
            while let Some(first) = incoming.recv().await {
                // Wait for a free slot first: outcomes that arrive meanwhile
                // join this batch.
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match incoming.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                let store = store.clone();
                tokio::spawn(async move {
                    let (outcomes, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                    let written = store.finalize_payments(&outcomes).await;
                    for (outcome, reply) in outcomes.iter().zip(replies) {
                        let answer = match &written {
                            Ok(rows) => Ok(rows.iter().find(|p| p.id == outcome.payment_id).cloned()),
                            Err(e) => Err(e.to_string()),
                        };
                        let _ = reply.send(answer);
                    }
                    drop(slot);
                });
            }
        });
        Self { queue }
    }

    /// Writes one outcome (with whatever else is queued) and returns the
    /// payment as committed; `None` if it was not PENDING any more.
    pub async fn finalize(&self, outcome: PaymentOutcome) -> DomainResult<Option<PaymentRow>> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((outcome, reply))
            .map_err(|_| anyhow::anyhow!("the payment writer has stopped"))?;
        match answer.await {
            Ok(Ok(row)) => Ok(row),
            Ok(Err(e)) => Err(DomainError::Internal(anyhow::anyhow!("recording payment outcomes: {e}"))),
            Err(_) => Err(anyhow::anyhow!("the payment writer has stopped").into()),
        }
    }
}

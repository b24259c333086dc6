//! Group commit: requests that arrive together are written together.
//!
//! payment-svc writes twice per payment (the reservation before the acquirer
//! is asked, the outcome after), merchant-svc twice per checkout (the order,
//! then its outcome). Each write is a commit, and a commit is the expensive
//! part (a log flush). Under load many requests are
//! in flight at once; a `Batcher` queues them and hands them to the store as
//! one batch (one statement on PostgreSQL, one transaction on SQLite), while
//! the next requests queue for the next batch. Every caller still waits for
//! its own result, committed, before it answers: nothing is acknowledged that
//! is not durable. With a single request in flight a batch is just that one.
use std::{future::Future, sync::Arc};

use tokio::sync::{mpsc, oneshot, Semaphore};

/// Largest batch written at once.
const MAX_BATCH: usize = 128;

type Reply<O, E> = oneshot::Sender<Result<O, BatchError<E>>>;

/// Why an item was not written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BatchError<E> {
    /// The batch it was in failed: the writer's error, given to each caller.
    #[error("batch write failed: {0}")]
    Write(E),
    /// The writer gave a wrong number of results, or has stopped.
    #[error("the batch writer failed: {0}")]
    Writer(String),
}

pub struct Batcher<I, O, E = String> {
    queue: mpsc::UnboundedSender<(I, Reply<O, E>)>,
}

impl<I: Send + 'static, O: Send + 'static, E: Clone + Send + 'static> Batcher<I, O, E> {
    /// `write` gets a batch and returns one result per item, in order; at
    /// most `max_in_flight` batches are written at once.
    pub fn spawn<F, Fut>(max_in_flight: usize, write: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, E>> + Send + 'static,
    {
        let (queue, mut incoming) = mpsc::unbounded_channel::<(I, Reply<O, E>)>();
        let slots = Arc::new(Semaphore::new(max_in_flight.max(1)));
        let write = Arc::new(write);
        tokio::spawn(async move {
            while let Some(first) = incoming.recv().await {
                // Wait for a free slot first: what arrives meanwhile joins
                // this batch.
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
                let write = write.clone();
                tokio::spawn(async move {
                    let (items, replies): (Vec<I>, Vec<Reply<O, E>>) = batch.into_iter().unzip();
                    let count = items.len();
                    match write(items).await {
                        Ok(results) if results.len() == count => {
                            for (reply, result) in replies.into_iter().zip(results) {
                                let _ = reply.send(Ok(result));
                            }
                        }
                        Ok(results) => {
                            let e = format!("batch of {count} gave {} results", results.len());
                            for reply in replies {
                                let _ = reply.send(Err(BatchError::Writer(e.clone())));
                            }
                        }
                        Err(e) => {
                            for reply in replies {
                                let _ = reply.send(Err(BatchError::Write(e.clone())));
                            }
                        }
                    }
                    drop(slot);
                });
            }
        });
        Self { queue }
    }

    /// Queues one item and waits for its committed result.
    pub async fn submit(&self, item: I) -> Result<O, BatchError<E>> {
        let stopped = || BatchError::Writer("the batch writer has stopped".to_owned());
        let (reply, answer) = oneshot::channel();
        self.queue.send((item, reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_caller_gets_its_own_result_and_batches_form_under_load() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher = Arc::new(Batcher::<u32, u32, String>::spawn(
            1,
            move |items: Vec<u32>| {
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(items.len());
                async move {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    Ok(items.into_iter().map(|i| i * 10).collect())
                }
            },
        ));
        let mut tasks = Vec::new();
        for i in 0..100u32 {
            let b = batcher.clone();
            tasks.push(tokio::spawn(async move { (i, b.submit(i).await) }));
        }
        for t in tasks {
            let (i, result) = t.await.expect("task");
            assert_eq!(result.expect("written"), i * 10);
        }
        let sizes = sizes.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(sizes.iter().sum::<usize>(), 100);
        assert!(
            sizes.len() < 100,
            "some requests were written together: {sizes:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_batch_fails_each_of_its_callers() {
        let batcher = Batcher::spawn(2, |_items: Vec<u32>| async {
            Err::<Vec<u32>, _>("disk full".to_owned())
        });
        let err = batcher.submit(1).await.expect_err("fails");
        assert!(
            matches!(&err, BatchError::Write(e) if e == "disk full"),
            "{err}"
        );
    }
}

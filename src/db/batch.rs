//! Natural batching of database writes: requests that arrive while a batch
//! is running wait for the next one, so under load many orders share one
//! statement and one commit, and at rest a request runs at once.
//!
//! A batch the server refuses (rather than one lost with its connection)
//! may have been refused for one request's data: its requests are then run
//! one by one, so that only the culprit gets the error and the others go on.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::sync::{mpsc, oneshot};

use super::error::{DbError, Result};

type Request<I, O> = (I, oneshot::Sender<Result<O>>);

/// Hands items to a task that runs them in batches of up to `max`.
pub struct Batcher<I, O> {
    sender: mpsc::UnboundedSender<Request<I, O>>,
    /// The longest a request waits for its answer, and the error it then
    /// gets.
    patience: Duration,
    timed_out: Arc<dyn Fn() -> DbError + Send + Sync>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
            patience: self.patience,
            timed_out: self.timed_out.clone(),
        }
    }
}

impl<I: Clone + Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Spawns the batching task; `run` gets the items of one batch and
    /// returns one output per item, in order. A request waits at most
    /// `patience` for its answer (queued behind other batches included),
    /// then fails with the error `timed_out` makes. The task ends when
    /// every `Batcher` handle is dropped.
    pub fn spawn<F, Fut, T>(max: usize, patience: Duration, timed_out: T, run: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<O>>> + Send,
        T: Fn() -> DbError + Send + Sync + 'static,
    {
        let (sender, mut receiver) = mpsc::unbounded_channel::<Request<I, O>>();
        tokio::spawn(async move {
            while let Some(first) = receiver.recv().await {
                let mut batch = vec![first];
                while batch.len() < max {
                    match receiver.try_recv() {
                        Ok(request) => batch.push(request),
                        Err(_) => break,
                    }
                }
                let (items, replies): (Vec<I>, Vec<_>) = batch.into_iter().unzip();
                let alone = (items.len() > 1).then(|| items.clone());
                match (run(items).await, alone) {
                    (Ok(outputs), _) => {
                        debug_assert_eq!(outputs.len(), replies.len());
                        for (reply, output) in replies.into_iter().zip(outputs) {
                            let _ = reply.send(Ok(output));
                        }
                    }
                    (Err(error), Some(items)) if error.may_be_one_requests_fault() => {
                        for (item, reply) in items.into_iter().zip(replies) {
                            let output = run(vec![item])
                                .await
                                .and_then(|mut outputs| outputs.pop().ok_or(DbError::Unanswered));
                            let _ = reply.send(output);
                        }
                    }
                    (Err(error), _) => {
                        let error = Arc::new(error);
                        for reply in replies {
                            let _ = reply.send(Err(DbError::Shared(error.clone())));
                        }
                    }
                }
            }
        });
        Self {
            sender,
            patience,
            timed_out: Arc::new(timed_out),
        }
    }

    /// Runs `item` in the next batch and returns its output.
    pub async fn run(&self, item: I) -> Result<O> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((item, reply))
            .map_err(|_| DbError::BatcherStopped)?;
        match tokio::time::timeout(self.patience, answer).await {
            Ok(answer) => answer.map_err(|_| DbError::BatcherStopped)?,
            Err(_) => Err((self.timed_out)()),
        }
    }
}

#[cfg(test)]
mod tests {
    use diesel::result::{DatabaseErrorKind, Error as Diesel};

    use super::*;

    /// Long enough for any batch of these tests.
    const PATIENCE: Duration = Duration::from_secs(60);

    /// A statement that doubles each number, refused by the server (as a
    /// check constraint would) for any batch holding a 13.
    async fn double_unless_13(items: Vec<u32>) -> Result<Vec<u32>> {
        if items.contains(&13) {
            return Err(Diesel::DatabaseError(
                DatabaseErrorKind::CheckViolation,
                Box::new("violates check constraint \"no_13\"".to_owned()),
            )
            .into());
        }
        Ok(items.into_iter().map(|n| n * 2).collect())
    }

    #[tokio::test]
    async fn a_refused_request_fails_alone_and_the_rest_of_its_batch_goes_on() {
        let batcher = Batcher::spawn(16, PATIENCE, || DbError::BatcherStopped, double_unless_13);
        let answers = futures_util::future::join_all([1, 13, 2, 3].map(|n| {
            let batcher = batcher.clone();
            async move { batcher.run(n).await }
        }))
        .await;
        assert_eq!(answers[0].as_ref().ok(), Some(&2));
        let refused = answers[1].as_ref().unwrap_err();
        assert!(
            refused.refused_data().unwrap().contains("no_13"),
            "{refused}"
        );
        assert_eq!(answers[2].as_ref().ok(), Some(&4));
        assert_eq!(answers[3].as_ref().ok(), Some(&6));
    }

    #[tokio::test]
    async fn a_lost_connection_fails_the_whole_batch_at_once() {
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = runs.clone();
        let batcher = Batcher::spawn(
            16,
            PATIENCE,
            || DbError::BatcherStopped,
            move |_items: Vec<u32>| {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async {
                    Err::<Vec<u32>, _>(
                        Diesel::DatabaseError(
                            DatabaseErrorKind::ClosedConnection,
                            Box::new("connection closed".to_owned()),
                        )
                        .into(),
                    )
                }
            },
        );
        let answers = futures_util::future::join_all([1, 2, 3].map(|n| {
            let batcher = batcher.clone();
            async move { batcher.run(n).await }
        }))
        .await;
        for answer in &answers {
            let error = answer.as_ref().unwrap_err();
            assert!(error.refused_data().is_none(), "{error}");
        }
        // However the requests were batched, none was tried alone again.
        assert!(runs.load(std::sync::atomic::Ordering::SeqCst) <= 3);
    }

    #[tokio::test]
    async fn a_request_waits_for_its_answer_no_longer_than_the_batchers_patience() {
        let patience = Duration::from_millis(200);
        let batcher = Batcher::spawn(
            16,
            patience,
            || DbError::Timeout {
                address: "db:5432".into(),
                after: Duration::from_millis(200),
            },
            |items: Vec<u32>| async move {
                // A batch of a 7 hangs, as on a link gone silent.
                if items.contains(&7) {
                    std::future::pending::<()>().await;
                }
                Ok(items)
            },
        );
        let waited = |started: std::time::Instant| {
            let waited = started.elapsed();
            assert!(waited >= patience && waited < patience * 10, "{waited:?}");
        };
        let started = std::time::Instant::now();
        let hung = batcher.run(7).await.unwrap_err();
        assert!(hung.to_string().contains("did not answer within"), "{hung}");
        waited(started);
        // Queued behind the hung batch: it too is answered in time.
        let started = std::time::Instant::now();
        assert!(batcher.run(1).await.is_err());
        waited(started);
    }
}

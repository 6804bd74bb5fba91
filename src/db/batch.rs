//! Natural batching of database writes: requests that arrive while a batch
//! is running wait for the next one, so under load many orders share one
//! statement and one commit, and at rest a request runs at once.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

type Request<I, O> = (I, oneshot::Sender<Result<O>>);

/// Hands items to a task that runs them in batches of up to `max`.
pub struct Batcher<I, O> {
    sender: mpsc::UnboundedSender<Request<I, O>>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
        }
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Spawns the batching task; `run` gets the items of one batch and
    /// returns one output per item, in order. The task ends when every
    /// `Batcher` handle is dropped.
    pub fn spawn<F, Fut>(max: usize, run: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<O>>> + Send,
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
                match run(items).await {
                    Ok(outputs) => {
                        debug_assert_eq!(outputs.len(), replies.len());
                        for (reply, output) in replies.into_iter().zip(outputs) {
                            let _ = reply.send(Ok(output));
                        }
                    }
                    Err(error) => {
                        let error = std::sync::Arc::new(error);
                        for reply in replies {
                            let _ = reply.send(Err(Error::Shared(error.clone())));
                        }
                    }
                }
            }
        });
        Self { sender }
    }

    /// Runs `item` in the next batch and returns its output.
    pub async fn run(&self, item: I) -> Result<O> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((item, reply))
            .map_err(|_| Error::BatcherStopped)?;
        answer.await.map_err(|_| Error::BatcherStopped)?
    }
}

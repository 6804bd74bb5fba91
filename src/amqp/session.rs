//! One connection's life: the topology declared, a publishing channel, and
//! a channel for each consumer and for the backlog poller.

use std::{future::Future, sync::Arc, time::Duration};

use lapin::Channel;
use tokio_util::sync::CancellationToken;

use super::error::Result;
use super::{
    Broker, ConnectionHealth, ConsumeSettings, Handler, Publisher, backlog, consumer::Consumer,
    declare, failed,
};
use crate::{amqp::Topology, domain::Inbox, metrics::Metrics};

/// A connection to the broker with the topology declared on it.
pub struct Session {
    connection: super::Connection,
    publisher: Publisher,
    topology: Arc<Topology>,
}

impl Session {
    /// Connects, declares the topology and opens the publishing channel.
    pub async fn open(
        broker: &Broker,
        topology: Arc<Topology>,
        confirm_timeout: Duration,
    ) -> Result<Self> {
        let connection = broker.connection().await?;
        let open = || async {
            connection
                .create_channel()
                .await
                .map_err(failed("opening a channel"))
        };
        let setup = open().await?;
        declare(&setup, &topology).await?;
        let _ = setup.close(200, "topology declared".into()).await;
        let publisher = Publisher::new(open().await?, confirm_timeout).await?;
        Ok(Self {
            connection,
            publisher,
            topology,
        })
    }

    /// The session's publisher; it fails once the session is lost.
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    pub fn health(&self) -> ConnectionHealth {
        ConnectionHealth(self.connection.status().clone())
    }

    async fn channel(&self) -> Result<Channel> {
        self.connection
            .create_channel()
            .await
            .map_err(failed("opening a channel"))
    }

    /// Opens a channel for `inbox`; the future it returns consumes from it
    /// with `handler` until `stop`, or until the channel fails.
    pub async fn consumer<H: Handler>(
        &self,
        inbox: Inbox,
        handler: Arc<H>,
        metrics: Arc<Metrics>,
        settings: ConsumeSettings,
        stop: CancellationToken,
    ) -> Result<impl Future<Output = Result<()>> + Send + 'static> {
        let channel = self.channel().await?;
        let consumer = Arc::new(Consumer {
            handler,
            publisher: self.publisher.clone(),
            topology: self.topology.clone(),
            metrics,
            inbox,
        });
        Ok(consumer.run(channel, settings, stop))
    }

    /// Opens a channel; the future it returns polls every queue's depth
    /// into `metrics` until `stop`.
    pub async fn backlog_poller(
        &self,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> Result<impl Future<Output = ()> + Send + 'static> {
        let channel = self.channel().await?;
        let topology = self.topology.clone();
        Ok(async move { backlog::poll_queue_depths(channel, &topology, &metrics, stop).await })
    }

    /// Closes the publishing channel and the connection.
    pub async fn close(self) {
        self.publisher.close().await;
        let _ = super::briefly(self.connection.close(200, "paywait stopping".into())).await;
    }
}

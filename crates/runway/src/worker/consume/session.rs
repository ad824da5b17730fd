//! One AMQP session of the worker: a consuming channel with the task
//! queues declared as Celery declares them, a confirm-mode publishing
//! channel, and the worker's own queue on the `celery.pidbox` fanout.

use lapin::options::{
    BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

use super::{AmqpBroker, ConsumerConfig};
use crate::broker::amqp;
use crate::results::backend::ResultStore;
use crate::worker::pool::Pool;
use crate::worker::runner::StepRunner;
use runway_core::celery::topology::queue_spec;

/// A connected session.
#[derive(Debug)]
pub struct Session {
    pub conn: Connection,
    pub consume: lapin::Channel,
    pub consumers: Vec<lapin::Consumer>,
    pub pidbox: lapin::Consumer,
}

impl Session {
    /// Connects, declares and starts consuming; the publishing channel is
    /// handed to the broker for parked copies, results and events.
    pub async fn open<S: StepRunner, R: ResultStore>(
        config: &ConsumerConfig,
        pool: &Pool<S, R, AmqpBroker>,
    ) -> Result<Session, lapin::Error> {
        let conn = Connection::connect(
            &config.broker_url,
            ConnectionProperties::default().with_connection_name("runway-worker".into()),
        )
        .await?;
        let consume = conn.create_channel().await?;
        consume
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await?;
        let publish = conn.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let consumers = consume_queues(&consume, config, &pool.config.hostname).await?;
        let pidbox = consume_pidbox(&conn, &pool.config.hostname).await?;
        if pool.events.enabled() {
            amqp::declare_celeryev(&publish).await?;
        }
        pool.broker.publish_tx.send_replace(Some(publish));
        Ok(Session {
            conn,
            consume,
            consumers,
            pidbox,
        })
    }
}

async fn consume_queues(
    ch: &lapin::Channel,
    config: &ConsumerConfig,
    hostname: &str,
) -> Result<Vec<lapin::Consumer>, lapin::Error> {
    let mut consumers = Vec::new();
    for q in &config.queues {
        amqp::declare(ch, &queue_spec(q)).await?;
        consumers.push(
            ch.basic_consume(
                q.as_str().into(),
                format!("{hostname}-{q}").into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?,
        );
    }
    Ok(consumers)
}

/// Broadcast control messages (revoke) reach every worker through its own
/// exclusive queue on `celery.pidbox`.
async fn consume_pidbox(
    conn: &Connection,
    hostname: &str,
) -> Result<lapin::Consumer, lapin::Error> {
    let control = conn.create_channel().await?;
    amqp::declare_pidbox(&control).await?;
    let q = control
        .queue_declare(
            format!("{hostname}.runway.pidbox").into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    control
        .queue_bind(
            q.name().clone(),
            amqp::PIDBOX.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    control
        .basic_consume(
            q.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
}

//! The worker's side of RabbitMQ: Celery's topology, header conversion, and
//! the publishes the worker makes (`rpc://` results, re-parked tasks,
//! `celeryev` events).

use lapin::options::{
    BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, ExchangeKind};
use serde_json::{Map, Value};

use runway_core::celery::control;
use runway_core::celery::message::Header;
use runway_core::celery::topology::QueueSpec;

/// Declares `spec` exactly as Celery does: a durable direct exchange, the
/// durable queue with `x-max-priority`, and the binding.
pub async fn declare(ch: &Channel, spec: &QueueSpec) -> lapin::Result<()> {
    ch.exchange_declare(
        spec.exchange.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await?;
    let mut args = FieldTable::default();
    // py-amqp encodes a Python int as a signed 32-bit field.
    args.insert(
        "x-max-priority".into(),
        AMQPValue::LongInt(i32::from(spec.max_priority)),
    );
    ch.queue_declare(
        spec.queue.as_str().into(),
        QueueDeclareOptions {
            durable: spec.durable,
            auto_delete: spec.auto_delete,
            ..QueueDeclareOptions::default()
        },
        args,
    )
    .await?;
    ch.queue_bind(
        spec.queue.as_str().into(),
        spec.exchange.as_str().into(),
        spec.binding_key.as_str().into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
}

/// `runway.parked.<queue>`: where a long step's message waits out its
/// per-message TTL, then dead-letters back to `queue`. Nothing consumes it.
pub async fn declare_parking(ch: &Channel, queue: &str) -> lapin::Result<String> {
    let name = format!("runway.parked.{queue}");
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from(Vec::new())),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(LongString::from(queue.as_bytes().to_vec())),
    );
    ch.queue_declare(
        name.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        args,
    )
    .await?;
    Ok(name)
}

/// `celeryev`, the topic exchange of worker and task events.
pub const CELERYEV: &str = "celeryev";

/// A worker's remote-control mailbox, as kombu's `Mailbox` declares it:
/// the `celery.pidbox` fanout and `reply.celery.pidbox` direct exchanges
/// (not durable), and the worker's own exclusive, auto-deleted queue
/// `<nodename>.celery.pidbox` (`x-expires`, `x-message-ttl`) bound to the
/// fanout. A second worker with the same node name gets 405
/// RESOURCE_LOCKED here.
pub async fn declare_mailbox(ch: &Channel, hostname: &str) -> lapin::Result<String> {
    for (name, kind) in [
        (control::PIDBOX_EXCHANGE, ExchangeKind::Fanout),
        (control::REPLY_EXCHANGE, ExchangeKind::Direct),
    ] {
        ch.exchange_declare(
            name.into(),
            kind,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    let queue = control::queue_name(hostname);
    let mut args = FieldTable::default();
    args.insert(
        "x-expires".into(),
        AMQPValue::LongInt(control::QUEUE_EXPIRES_MS as i32),
    );
    args.insert(
        "x-message-ttl".into(),
        AMQPValue::LongInt(control::MESSAGE_TTL_MS as i32),
    );
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        },
        args,
    )
    .await?;
    ch.queue_bind(
        queue.as_str().into(),
        control::PIDBOX_EXCHANGE.into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(queue)
}

/// A control reply, as kombu's `Mailbox._publish_reply` sends it: JSON,
/// transient, headers `ticket` and `clock` (never `expires`, which would
/// make the caller drop it).
pub async fn publish_reply(
    ch: &Channel,
    reply_to: &control::ReplyTo,
    ticket: Option<&str>,
    clock: u64,
    body: &[u8],
) -> lapin::Result<()> {
    let mut headers = FieldTable::default();
    if let Some(t) = ticket {
        headers.insert(
            "ticket".into(),
            AMQPValue::LongString(t.as_bytes().to_vec().into()),
        );
    }
    headers.insert("clock".into(), AMQPValue::LongLongInt(clock as i64));
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_delivery_mode(1)
        .with_headers(headers);
    ch.basic_publish(
        reply_to.exchange.as_str().into(),
        reply_to.routing_key.as_str().into(),
        BasicPublishOptions::default(),
        body,
        props,
    )
    .await?;
    Ok(())
}

pub async fn declare_celeryev(ch: &Channel) -> lapin::Result<()> {
    ch.exchange_declare(
        CELERYEV.into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
}

/// An AMQP field table as JSON, the shape the decoder reads.
pub fn headers_to_json(table: &FieldTable) -> Map<String, Value> {
    table
        .inner()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), value_to_json(v)))
        .collect()
}

fn value_to_json(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(n) => Value::from(*n),
        AMQPValue::ShortShortUInt(n) => Value::from(*n),
        AMQPValue::ShortInt(n) => Value::from(*n),
        AMQPValue::ShortUInt(n) => Value::from(*n),
        AMQPValue::LongInt(n) => Value::from(*n),
        AMQPValue::LongUInt(n) => Value::from(*n),
        AMQPValue::LongLongInt(n) => Value::from(*n),
        AMQPValue::Timestamp(n) => Value::from(*n),
        AMQPValue::Float(f) => {
            serde_json::Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number)
        }
        AMQPValue::Double(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        AMQPValue::DecimalValue(d) => {
            let v = f64::from(d.value) / 10f64.powi(i32::from(d.scale));
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
        }
        AMQPValue::ShortString(s) => Value::String(s.as_str().to_owned()),
        AMQPValue::LongString(s) => {
            Value::String(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        AMQPValue::ByteArray(b) => {
            Value::String(String::from_utf8_lossy(b.as_slice()).into_owned())
        }
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(value_to_json).collect()),
        AMQPValue::FieldTable(t) => Value::Object(headers_to_json(t)),
        AMQPValue::Void => Value::Null,
    }
}

fn header_to_amqp(h: &Header) -> AMQPValue {
    match h {
        Header::Null => AMQPValue::Void,
        Header::Bool(b) => AMQPValue::Boolean(*b),
        Header::Int(n) => i32::try_from(*n).map_or(AMQPValue::LongLongInt(*n), AMQPValue::LongInt),
        Header::Str(s) => AMQPValue::LongString(LongString::from(s.as_bytes().to_vec())),
        Header::List(items) => {
            let mut a = FieldArray::default();
            for i in items {
                a.push(header_to_amqp(i));
            }
            AMQPValue::FieldArray(a)
        }
        Header::EmptyDict => AMQPValue::FieldTable(FieldTable::default()),
    }
}

/// Celery's headers in their order, as an AMQP table.
pub fn headers_table(headers: &[(&str, Header)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in headers {
        t.insert(ShortString::from(*k), header_to_amqp(v));
    }
    t
}

/// A JSON headers map back to AMQP (a re-parked delivery keeps its headers).
pub fn json_to_table(m: &Map<String, Value>) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in m {
        t.insert(ShortString::from(k.as_str()), json_to_amqp(v));
    }
    t
}

fn json_to_amqp(v: &Value) -> AMQPValue {
    match v {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i32::try_from(i).map_or(AMQPValue::LongLongInt(i), AMQPValue::LongInt),
            None => AMQPValue::Double(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_bytes().to_vec())),
        Value::Array(items) => {
            let mut a = FieldArray::default();
            for i in items {
                a.push(json_to_amqp(i));
            }
            AMQPValue::FieldArray(a)
        }
        Value::Object(m) => AMQPValue::FieldTable(json_to_table(m)),
    }
}

/// Publishes and waits for the broker's confirm (the channel is in confirm
/// mode). A nack or a returned message is an error: nothing is assumed stored
/// that the broker did not take.
pub async fn publish_confirmed(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    props: BasicProperties,
) -> Result<(), PublishError> {
    let confirm = ch
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            props,
        )
        .await
        .map_err(PublishError::Amqp)?
        .await
        .map_err(PublishError::Amqp)?;
    if confirm.is_nack() {
        return Err(PublishError::Nacked);
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("AMQP: {0}")]
    Amqp(lapin::Error),
    #[error("the broker refused the message (nack)")]
    Nacked,
}

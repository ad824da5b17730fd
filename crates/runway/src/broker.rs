//! The Celery broker (RabbitMQ) as both services use it: queue topology
//! declared as Celery declares it, AMQP header conversion, and publishing
//! with confirms.

pub mod amqp;
pub mod connect;
pub mod publish;

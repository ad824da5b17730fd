//! Connecting to RabbitMQ, `amqp://` or `amqps://`. For `amqps://` lapin
//! (through tcp-stream and rustls, on ring) checks the broker's chain and
//! host name against the system's roots plus the CA of `--broker-ca-file`.

use std::path::Path;

use lapin::tcp::OwnedTLSConfig;
use lapin::{Connect as _, Connection, ConnectionProperties};

use crate::tls;

/// The broker's extra trust root, read once at start-up.
#[derive(Debug, Clone, Default)]
pub struct BrokerTls(OwnedTLSConfig);

impl BrokerTls {
    /// `--broker-ca-file`, checked to hold PEM certificates now, so a bad
    /// one fails at start-up rather than on every reconnection.
    pub fn load(ca_file: Option<&Path>) -> Result<BrokerTls, tls::Error> {
        let Some(path) = ca_file else {
            return Ok(BrokerTls::default());
        };
        tls::read_pem(path)?;
        let pem = std::fs::read_to_string(path).map_err(|source| tls::Error::ReadCa {
            path: path.to_owned(),
            source,
        })?;
        Ok(BrokerTls(OwnedTLSConfig {
            identity: None,
            cert_chain: Some(pem),
        }))
    }
}

/// Connects, naming the connection as the broker's management UI shows it.
pub async fn connect(url: &str, tls: &BrokerTls, name: &str) -> lapin::Result<Connection> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    url.connect_with_config(props, tls.0.clone(), lapin::runtime::default_runtime()?)
        .await
}

//! Dagster's PostgreSQL run and event-log storage, as far as the step task
//! reads and writes it: the run's status and record, new event-log rows (with
//! the `run_events` notification dagster-postgres sends), and a LISTEN stream
//! that tells the worker when a run it waits on changes.
//!
//! Every query states its parameters' types (`query_typed`): it is sent as
//! one unnamed statement in one round trip, where an untyped query costs a
//! prepare, an execute and a close, and it needs no prepared statement to
//! outlive it (so it also runs through PgBouncer's transaction pooling).

pub mod ssl;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_postgres::types::Type;
use tokio_postgres::{AsyncMessage, Client, Config, Connection, Socket};

use crate::retry::Backoff;
use crate::tls::postgres::MakeRustls;
use backon::BackoffBuilder as _;
use runway_core::dagster::instance::{self, PgTarget, RunRecord};

/// The channel dagster-postgres notifies on every stored event.
pub const CHANNEL: &str = "run_events";

#[derive(Debug, Error)]
pub enum Error {
    #[error("PostgreSQL {target}: {reason}")]
    Db {
        target: String,
        /// The server's own words when it answered (severity, SQLSTATE,
        /// message), else what failed on the way.
        reason: String,
        source: tokio_postgres::Error,
    },
    /// The instance's TLS parameters (or our CA file) are unusable.
    #[error("PostgreSQL {target}: {source}")]
    Tls { target: String, source: ssl::Error },
    #[error("run {run_id}: {source}")]
    Record {
        run_id: String,
        source: runway_core::dagster::Error,
    },
}

impl Error {
    /// Whether the server never answered (connection refused, reset or
    /// closed): an outage worth waiting out, unlike an error the server sent.
    pub fn is_outage(&self) -> bool {
        matches!(self, Error::Db { source, .. } if source.as_db_error().is_none())
    }
}

/// A notification: the run whose event was stored, and the event's row id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notified {
    pub run_id: String,
    pub event_id: i64,
}

/// `<run_id>_<id>`; run ids contain `-` but never `_`.
pub fn parse_payload(payload: &str) -> Option<Notified> {
    let (run, id) = payload.rsplit_once('_')?;
    Some(Notified {
        run_id: run.to_owned(),
        event_id: id.parse().ok()?,
    })
}

fn config(t: &PgTarget, wire: ssl::Wire) -> Config {
    let mut c = Config::new();
    c.host(&t.host)
        .port(t.port)
        .user(&t.user)
        .dbname(&t.dbname)
        .application_name("runway-worker")
        .connect_timeout(Duration::from_secs(10))
        .ssl_mode(wire.mode());
    if let Some(p) = &t.password {
        c.password(p);
    }
    c
}

/// Connections per database. Each runs one transaction at a time, and every
/// event row is a committed transaction (as dagster-postgres writes them), so
/// several connections let PostgreSQL commit concurrently.
const POOL: usize = 8;

type Conn = Connection<Socket, crate::tls::postgres::RustlsStream<Socket>>;

/// A few pipelined connections per database, used in turn and reopened when
/// they break.
#[derive(Debug)]
pub struct Pg {
    clients: Mutex<HashMap<PgTarget, Vec<Arc<Client>>>>,
    next: std::sync::atomic::AtomicUsize,
    /// `--postgres-ca-file`.
    ca_file: Option<PathBuf>,
    tls: ssl::Connectors,
    /// Whether the last call reached a server (for `/ready`).
    pub reachable: crate::ops::Reachable,
}

impl Default for Pg {
    fn default() -> Pg {
        Pg::new(None)
    }
}

impl Pg {
    pub fn new(ca_file: Option<PathBuf>) -> Pg {
        Pg {
            clients: Mutex::default(),
            next: Default::default(),
            ca_file,
            tls: ssl::Connectors::default(),
            reachable: crate::ops::Reachable::new("postgresql"),
        }
    }

    /// What the target's `sslmode` asks for. A TLS setting that cannot
    /// work (an unknown mode, an unreadable CA) is reported as such, and
    /// is not a sign that the server is unreachable. `--postgres-url` is
    /// checked with it at start-up.
    pub fn tls_for(&self, t: &PgTarget) -> Result<(ssl::Wire, MakeRustls), Error> {
        let tls_err = |source| Error::Tls {
            target: format!("{t:?}"),
            source,
        };
        let policy = ssl::policy(&t.params, self.ca_file.as_deref()).map_err(tls_err)?;
        Ok((policy.wire, self.tls.get(&policy).map_err(tls_err)?))
    }

    async fn connect(&self, t: &PgTarget) -> Result<(Client, Conn), Error> {
        let (wire, make) = self.tls_for(t)?;
        self.note(t, config(t, wire).connect(make).await)
    }

    async fn client(&self, t: &PgTarget) -> Result<Arc<Client>, Error> {
        let turn = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        {
            let mut all = self.lock();
            let pool = all.entry(t.clone()).or_default();
            pool.retain(|c| !c.is_closed());
            if pool.len() >= POOL {
                return Ok(pool[turn % pool.len()].clone());
            }
        }
        let (client, conn) = self.connect(t).await?;
        let target = format!("{t:?}");
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::warn!(%target, error = %reason(&e), "PostgreSQL connection closed");
            }
        });
        let client = Arc::new(client);
        let mut all = self.lock();
        let pool = all.entry(t.clone()).or_default();
        if pool.len() < POOL {
            pool.push(client.clone());
        }
        Ok(client)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PgTarget, Vec<Arc<Client>>>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored run, if it exists.
    pub async fn run(&self, t: &PgTarget, run_id: &str) -> Result<Option<RunRecord>, Error> {
        let c = self.client(t).await?;
        let row = self.note(
            t,
            c.query_typed_opt(
                "SELECT status, run_body FROM runs WHERE run_id = $1",
                &[(&run_id, Type::TEXT)],
            )
            .await,
        )?;
        let Some(row) = row else { return Ok(None) };
        let status: String = row.try_get(0).map_err(|e| db(t, e))?;
        let body: String = row.try_get(1).map_err(|e| db(t, e))?;
        instance::run_record(&status, &body)
            .map(Some)
            .map_err(|source| Error::Record {
                run_id: run_id.to_owned(),
                source,
            })
    }

    /// The statuses of several runs at once (the fallback sweep).
    pub async fn statuses(
        &self,
        t: &PgTarget,
        run_ids: &[String],
    ) -> Result<HashMap<String, String>, Error> {
        let c = self.client(t).await?;
        let rows = self.note(
            t,
            c.query_typed(
                "SELECT run_id, status FROM runs WHERE run_id = ANY($1)",
                &[(&run_ids, Type::TEXT_ARRAY)],
            )
            .await,
        )?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0).map_err(|e| db(t, e))?,
                    r.try_get(1).map_err(|e| db(t, e))?,
                ))
            })
            .collect()
    }

    /// The type of a stored event.
    pub async fn event_type(&self, t: &PgTarget, id: i64) -> Result<Option<String>, Error> {
        let c = self.client(t).await?;
        let row = self.note(
            t,
            c.query_typed_opt(
                "SELECT dagster_event_type FROM event_logs WHERE id = $1::int8",
                &[(&id, Type::INT8)],
            )
            .await,
        )?;
        Ok(row.and_then(|r| r.try_get(0).ok()))
    }

    /// Inserts an event-log row as `PostgresEventLogStorage.store_event` does
    /// (timestamp as naive UTC) and sends its notification (`<run id>_<row
    /// id>` on `run_events`). Returns the row id. One statement: Dagster
    /// sends the INSERT and the NOTIFY as two, but a listener sees the same
    /// row and payload either way (a notification is delivered at commit),
    /// and one round trip and one transaction per event is a good part of
    /// what a step costs PostgreSQL.
    pub async fn store_event(&self, t: &PgTarget, row: &EventRow<'_>) -> Result<i64, Error> {
        let c = self.client(t).await?;
        let inserted = c
            .query_typed_one(
                "WITH row AS (INSERT INTO event_logs \
                 (run_id, event, dagster_event_type, timestamp, step_key) \
                 VALUES ($1, $2, $3, to_timestamp($4::float8) AT TIME ZONE 'UTC', $5) \
                 RETURNING id) \
                 SELECT id::int8, pg_notify($6, $1::text || '_' || id::text)::text FROM row",
                &[
                    (&row.run_id, Type::TEXT),
                    (&row.event, Type::TEXT),
                    (&row.event_type, Type::TEXT),
                    (&row.timestamp, Type::FLOAT8),
                    (&row.step_key, Type::TEXT),
                    (&CHANNEL, Type::TEXT),
                ],
            )
            .await
            .and_then(|r| r.try_get(0));
        self.note(t, inserted)
    }
}

/// One row of `event_logs`.
#[derive(Debug, Clone)]
pub struct EventRow<'a> {
    pub run_id: &'a str,
    pub event: &'a str,
    pub event_type: &'a str,
    pub timestamp: f64,
    pub step_key: &'a str,
}

impl Pg {
    /// Notes whether a call reached the server: an error the server sent
    /// (a missing table, a constraint) still means it answered.
    fn note<T>(&self, t: &PgTarget, r: Result<T, tokio_postgres::Error>) -> Result<T, Error> {
        match r {
            Ok(v) => {
                self.reachable.ok();
                Ok(v)
            }
            Err(e) => {
                let e = db(t, e);
                if let Error::Db { source, .. } = &e {
                    if source.as_db_error().is_none() {
                        self.reachable.failed(&e);
                    } else {
                        self.reachable.ok();
                    }
                }
                Err(e)
            }
        }
    }
}

fn db(t: &PgTarget, source: tokio_postgres::Error) -> Error {
    Error::Db {
        target: format!("{t:?}"),
        reason: reason(&source),
        source,
    }
}

/// tokio-postgres prints a server error as just "db error": the server's
/// severity, code and message are what tells "too many clients" from a
/// missing table.
fn reason(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" ({detail})"));
            }
            text
        }
        None => {
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                text.push_str(&format!(": {c}"));
                cause = c.source();
            }
            text
        }
    }
}

/// Listens on `run_events` until `tx` closes, reconnecting with backoff.
/// After every (re)connection it sends `None`, so the receiver re-checks
/// what it may have missed while disconnected.
pub async fn listen(pg: Arc<Pg>, t: PgTarget, tx: mpsc::Sender<Option<Notified>>) {
    let mut delays = Backoff::reconnect().build();
    loop {
        match pg.connect(&t).await {
            Ok((client, mut conn)) => {
                let (ntx, mut nrx) = mpsc::channel::<Notified>(1024);
                let driver = tokio::spawn(async move {
                    let mut stream = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
                    while let Some(msg) = stream.next().await {
                        match msg {
                            Ok(AsyncMessage::Notification(n)) => {
                                if let Some(p) = parse_payload(n.payload()) {
                                    if ntx.send(p).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %reason(&e), "LISTEN connection failed");
                                return;
                            }
                        }
                    }
                });
                if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    tracing::warn!(target = ?t, error = %reason(&e), "LISTEN failed");
                } else {
                    delays = Backoff::reconnect().build();
                    if tx.send(None).await.is_err() {
                        driver.abort();
                        return;
                    }
                    while let Some(n) = nrx.recv().await {
                        if tx.send(Some(n)).await.is_err() {
                            driver.abort();
                            return;
                        }
                    }
                }
                driver.abort();
            }
            Err(e) => tracing::warn!(error = %e, "PostgreSQL LISTEN connect failed"),
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(delays.delay()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_split_on_the_last_underscore() {
        assert_eq!(
            parse_payload("1c2e9a5b-7d3e-4e8f_42"),
            Some(Notified {
                run_id: "1c2e9a5b-7d3e-4e8f".into(),
                event_id: 42
            })
        );
        assert_eq!(parse_payload("nope"), None);
        assert_eq!(parse_payload("r_x"), None);
    }
}

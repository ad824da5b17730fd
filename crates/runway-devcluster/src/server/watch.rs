//! Watches: a chunked stream of one JSON event a line, from a
//! resourceVersion or from the current state, with selectors applied to
//! every transition, bookmarks, `sendInitialEvents`, and a timeout.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::list::Selectors;
use super::Shared;
use crate::http::{stream_response, Query, Resp};
use crate::status::{ApiError, Cause, Resource};
use crate::store::{Event, EventType, ListQuery, Obj, Store, Stored};
use crate::validate::Kind;

/// What a watch request asks for.
struct WatchRequest {
    kind: Kind,
    namespace: Option<String>,
    sel: Selectors,
    bookmarks: bool,
    send_initial: bool,
    timeout: Duration,
    /// `None`: from the current state (`resourceVersion` unset or `0`).
    from_rev: Option<u64>,
}

/// Events to send before the live ones, in order.
type Initial = Vec<(&'static str, Obj)>;

impl WatchRequest {
    fn parse(
        shared: &Shared,
        kind: Kind,
        namespace: Option<&str>,
        q: &Query,
    ) -> Result<WatchRequest, ApiError> {
        let sel = Selectors::parse(kind, q)?;
        let bookmarks = q.flag("allowWatchBookmarks");
        let send_initial = q.flag("sendInitialEvents");
        if send_initial && (q.get("resourceVersionMatch") != Some("NotOlderThan") || !bookmarks) {
            return Err(ApiError::invalid(
                "ListOptions",
                Resource {
                    plural: "listoptions",
                    group: "meta.k8s.io",
                },
                "",
                vec![Cause {
                    reason: "FieldValueForbidden",
                    message: "sendInitialEvents requires setting resourceVersionMatch to \
                              NotOlderThan and allowWatchBookmarks to true"
                        .into(),
                    field: "sendInitialEvents".into(),
                }],
            ));
        }
        let timeout = match q.int("timeoutSeconds")? {
            Some(s) if s > 0 => Duration::from_secs(s.unsigned_abs()),
            _ => shared.config.default_watch_timeout,
        };
        let from_rev = match q.get("resourceVersion").filter(|r| !r.is_empty()) {
            None | Some("0") => None,
            Some(r) => Some(
                r.parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {r:?}")))?,
            ),
        };
        Ok(WatchRequest {
            kind,
            namespace: namespace.map(str::to_owned),
            sel,
            bookmarks,
            send_initial,
            timeout,
            from_rev,
        })
    }

    fn matches(&self, obj: &Stored) -> bool {
        let in_ns = self.namespace.as_ref().is_none_or(|n| obj.namespace() == n);
        in_ns && self.sel.matches(obj)
    }

    /// The event a change produces for this watcher, if any.
    fn transition(&self, e: &Event) -> Option<&'static str> {
        if e.kind as u8 != self.kind as u8 {
            return None;
        }
        transition(e.ty, e.prev.as_deref(), &e.object, &|o| self.matches(o))
    }
}

/// GET on a collection with `watch`.
pub(super) fn watch(
    shared: &Arc<Shared>,
    kind: Kind,
    namespace: Option<&str>,
    q: &Query,
) -> Result<Resp, ApiError> {
    let req = WatchRequest::parse(shared, kind, namespace, q)?;
    // Read the starting state and subscribe under one lock so the stream has
    // neither gaps nor duplicates.
    let (rx, initial, current) = {
        let store = shared.cluster.lock();
        let rx = shared.cluster.subscribe();
        (rx, initial_events(&store, &req), store.revision())
    };
    // A plain watch from a revision the cluster has not reached yet waits
    // for it, as the real server's does: only changes after it are sent.
    let last_rev = current.max(req.from_rev.unwrap_or(0));
    let (resp, tx) = stream_response("application/json", 256);
    match initial {
        Ok(initial) => {
            tokio::spawn(stream(shared.clone(), req, rx, initial, last_rev, tx));
        }
        Err(err) => {
            // An expired or too large version is a 200 with one ERROR event,
            // as the real server's watch does; kube-rs and the Python client
            // relist on 410.
            let line = event_line("ERROR", &err.to_status());
            tokio::spawn(async move {
                let _ = tx.send(line).await;
            });
        }
    }
    Ok(resp)
}

/// The changes after the requested revision, or the current objects as ADDED.
fn initial_events(store: &Store, req: &WatchRequest) -> Result<Initial, ApiError> {
    let current = store.revision();
    match req.from_rev {
        // Initial events must be at least as new as the revision asked for:
        // the real server gives up waiting for it with this error.
        Some(n) if req.send_initial && n > current => {
            Err(ApiError::too_large_resource_version(n, current))
        }
        Some(n) if !req.send_initial => store.events_after(n).map(|events| {
            events
                .iter()
                .filter_map(|e| req.transition(e).map(|ty| (ty, e.object.clone())))
                .collect()
        }),
        _ => store
            .list(
                &ListQuery {
                    kind: req.kind,
                    namespace: req.namespace.as_deref(),
                    at: None,
                    after: None,
                    limit: 0,
                    labels: &req.sel.label.equalities(),
                },
                |o| req.sel.matches(o),
            )
            .map(|page| page.items.iter().map(|o| ("ADDED", o.clone())).collect()),
    }
}

/// Writes the initial events, then live ones and bookmarks, until the
/// timeout, a dropped watch, a lagging receiver or a gone client.
async fn stream(
    shared: Arc<Shared>,
    req: WatchRequest,
    mut rx: broadcast::Receiver<Arc<Event>>,
    initial: Initial,
    mut last_rev: u64,
    tx: mpsc::Sender<Bytes>,
) {
    let mut epoch = shared.faults.watch_epoch();
    let deadline = tokio::time::sleep(req.timeout);
    tokio::pin!(deadline);
    for (ty, obj) in initial {
        if tx.send(object_line(ty, req.kind, &obj)).await.is_err() {
            return;
        }
    }
    if req.send_initial && tx.send(bookmark(req.kind, last_rev, true)).await.is_err() {
        return;
    }
    let mut ticker = tokio::time::interval(shared.config.bookmark_interval);
    ticker.tick().await;
    let _ = epoch.borrow_and_update();
    loop {
        tokio::select! {
            () = &mut deadline => return,
            _ = epoch.changed() => return,
            () = tx.closed() => return,
            _ = ticker.tick(), if req.bookmarks => {
                // No bookmark before the revision the watch starts after.
                let rev = shared.cluster.revision();
                if rev >= last_rev && tx.send(bookmark(req.kind, rev, false)).await.is_err() {
                    return;
                }
            }
            ev = rx.recv() => match ev {
                Ok(e) => {
                    if e.rev <= last_rev {
                        continue;
                    }
                    last_rev = e.rev;
                    if let Some(ty) = req.transition(&e) {
                        if tx.send(object_line(ty, req.kind, &e.object)).await.is_err() {
                            return;
                        }
                    }
                }
                // Too slow: end the stream; the client resumes from its
                // last revision (or relists on 410).
                Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return,
            }
        }
    }
}

/// One watch event line of a stored object: its stored JSON with the type
/// meta, copied, not serialized again.
fn object_line(ty: &str, kind: Kind, obj: &Stored) -> Bytes {
    let mut line = Vec::with_capacity(2048);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(ty.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    obj.write_typed(kind, &mut line);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

/// One watch event line of a status or bookmark.
fn event_line(ty: &str, object: &(impl serde::Serialize + ?Sized)) -> Bytes {
    #[derive(serde::Serialize)]
    struct Line<'a, T: ?Sized> {
        #[serde(rename = "type")]
        ty: &'a str,
        object: &'a T,
    }
    let mut line = serde_json::to_vec(&Line { ty, object }).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn bookmark(kind: Kind, rev: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rev.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line(
        "BOOKMARK",
        &json!({"kind": kind.kind_name(), "apiVersion": kind.api_version(), "metadata": meta}),
    )
}

/// The watch event type a change produces for a filtered watcher: objects
/// that start matching are ADDED, those that stop matching are DELETED.
fn transition(
    ty: EventType,
    prev: Option<&Stored>,
    obj: &Stored,
    matches: &dyn Fn(&Stored) -> bool,
) -> Option<&'static str> {
    let now = matches(obj);
    let before = prev.is_some_and(matches);
    match ty {
        EventType::Added => now.then_some("ADDED"),
        EventType::Deleted => (before || now).then_some("DELETED"),
        EventType::Modified => match (before, now) {
            (true, true) => Some("MODIFIED"),
            (false, true) => Some("ADDED"),
            (true, false) => Some("DELETED"),
            (false, false) => None,
        },
    }
}

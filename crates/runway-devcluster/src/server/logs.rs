//! `pods/{name}/log`: a container's log as text, with `container`,
//! `timestamps`, `tailLines`, `sinceSeconds`/`sinceTime` and `limitBytes`,
//! or followed (`follow=true`) until the container ends.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use super::Shared;
use crate::clock::{parse_rfc3339, rfc3339};
use crate::http::{stream_response, text_response, Query, Resp};
use crate::logs::LogStore;
use crate::status::ApiError;
use crate::validate::Kind;

/// One log line: when it was written (epoch ms) and its text.
type Line = (i64, String);

/// How lines are rendered.
#[derive(Debug, Clone, Copy)]
struct Format {
    timestamps: bool,
}

impl Format {
    fn line(self, (ts, line): &Line) -> String {
        if self.timestamps {
            format!("{} {line}\n", rfc3339_nanos(*ts))
        } else {
            format!("{line}\n")
        }
    }
}

pub(super) async fn pod_log(
    shared: &Arc<Shared>,
    namespace: &str,
    name: &str,
    q: &Query,
) -> Result<Resp, ApiError> {
    let pod = shared.cluster.get(Kind::Pod, namespace, name)?.value();
    let container = pick_container(&pod, name, q)?;
    let Some((lines, closed)) = shared.logs.read_from(namespace, name, &container, 0) else {
        let reason = pod["status"]["containerStatuses"]
            .as_array()
            .and_then(|cs| cs.iter().find(|s| s["name"] == container.as_str()))
            .and_then(|s| s["state"]["waiting"]["reason"].as_str())
            .unwrap_or("ContainerCreating")
            .to_owned();
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        )));
    };
    let format = Format {
        timestamps: q.flag("timestamps"),
    };
    let text = select(shared, &lines, q, format)?;
    if !q.flag("follow") || closed {
        return Ok(text_response(200, text));
    }
    let (resp, tx) = stream_response("text/plain; charset=utf-8", 64);
    let source = Source {
        logs: shared.logs.clone(),
        namespace: namespace.to_owned(),
        pod: name.to_owned(),
        container,
    };
    tokio::spawn(follow(source, lines.len(), text, format, tx));
    Ok(resp)
}

/// The container asked for, or the only one; as kube-apiserver words the errors.
fn pick_container(pod: &Value, name: &str, q: &Query) -> Result<String, ApiError> {
    let containers: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    match q.get("container").filter(|c| !c.is_empty()) {
        Some(c) if containers.iter().any(|x| x == c) => Ok(c.to_owned()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            containers.join(" ")
        ))),
    }
}

/// The text of the lines the query selects: since a time, the last N, at
/// most so many bytes (cut at a character boundary).
fn select(shared: &Shared, lines: &[Line], q: &Query, format: Format) -> Result<String, ApiError> {
    let tail = q.int("tailLines")?;
    let limit_bytes = q.int("limitBytes")?;
    let since_ms = match q.int("sinceSeconds")? {
        Some(s) => Some(shared.cluster.clock.now_ms() - s * 1000),
        None => q.get("sinceTime").and_then(parse_rfc3339),
    };
    let keep = |(ts, _): &&Line| since_ms.is_none_or(|s| *ts >= s);
    let mut selected: Vec<&Line> = lines.iter().filter(keep).collect();
    if let Some(n) = tail {
        let n = usize::try_from(n.max(0)).unwrap_or(0);
        let skip = selected.len().saturating_sub(n);
        selected.drain(..skip);
    }
    let mut text: String = selected.iter().map(|l| format.line(l)).collect();
    if let Some(limit) = limit_bytes.and_then(|l| usize::try_from(l).ok()) {
        if text.len() > limit {
            let mut cut = limit;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
    }
    Ok(text)
}

/// Where a followed log is read from.
struct Source {
    logs: Arc<LogStore>,
    namespace: String,
    pod: String,
    container: String,
}

/// Sends what was selected, then every new line, until the log closes or
/// the client goes.
async fn follow(
    src: Source,
    mut next: usize,
    text: String,
    format: Format,
    tx: mpsc::Sender<Bytes>,
) {
    if !text.is_empty() && tx.send(Bytes::from(text)).await.is_err() {
        return;
    }
    loop {
        let notified = src.logs.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let Some((more, closed)) =
            src.logs
                .read_from(&src.namespace, &src.pod, &src.container, next)
        else {
            return;
        };
        next += more.len();
        let chunk: String = more.iter().map(|l| format.line(l)).collect();
        if !chunk.is_empty() && tx.send(Bytes::from(chunk)).await.is_err() {
            return;
        }
        if closed {
            return;
        }
        tokio::select! {
            () = notified => {}
            () = tx.closed() => return,
        }
    }
}

fn rfc3339_nanos(ms: i64) -> String {
    let base = rfc3339(ms);
    let frac = ms.rem_euclid(1000);
    format!("{}.{frac:03}000000Z", base.trim_end_matches('Z'))
}

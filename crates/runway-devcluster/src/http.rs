//! HTTP plumbing for the dev cluster: a body type that is either complete or a
//! stream of chunks (watches, followed logs), query parsing, and responses.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::{Response, StatusCode};
use serde_json::Value;
use tokio::sync::mpsc;

use super::status::ApiError;

/// A response body: all at once, or chunks from a channel until it closes.
#[derive(Debug)]
pub enum Body {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Body::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Body::Stream(rx) => rx.poll_recv(cx).map(|c| c.map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

pub type Resp = Response<Body>;

/// A JSON response.
pub fn json_response(code: u16, value: &Value) -> Resp {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    json_bytes_response(code, Bytes::from(bytes))
}

/// A response of JSON already serialized.
pub fn json_bytes_response(code: u16, json: Bytes) -> Resp {
    let mut resp = Response::new(Body::Full(Some(json)));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Adds one `Warning: 299 - "text"` header per warning, quoted as the real
/// API server quotes them (RFC 7234 quoted-string).
pub fn add_warnings(resp: &mut Resp, warnings: &[String]) {
    for text in warnings {
        let quoted = text.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = hyper::header::HeaderValue::from_str(&format!("299 - \"{quoted}\"")) {
            resp.headers_mut().append("Warning", v);
        }
    }
}

/// A plain-text response.
pub fn text_response(code: u16, text: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(Body::Full(Some(text.into())));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// An error as a Status body, with `Retry-After` where it applies.
pub fn error_response(err: &ApiError) -> Resp {
    let mut resp = json_response(err.code, &err.to_status());
    if let Some(secs) = err.retry_after {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(hyper::header::RETRY_AFTER, v);
        }
    }
    resp
}

/// A chunked streaming response fed by the returned sender.
pub fn stream_response(content_type: &'static str, capacity: usize) -> (Resp, mpsc::Sender<Bytes>) {
    let (tx, rx) = mpsc::channel(capacity);
    let mut resp = Response::new(Body::Stream(rx));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    (resp, tx)
}

/// Query parameters, percent-decoded, in order.
#[derive(Debug, Default, Clone)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let Some(raw) = raw else {
            return Query::default();
        };
        Query(
            raw.split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `true`/`1` as Kubernetes parses boolean parameters.
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | "True"))
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid value for {key}: {v:?}"))),
        }
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = Query::parse(Some(
            "labelSelector=job-name%3Dx%2Cb+in+(c)&watch=1&limit=5&x=%zz",
        ));
        assert_eq!(q.get("labelSelector"), Some("job-name=x,b in (c)"));
        assert!(q.flag("watch"));
        assert_eq!(q.int("limit").unwrap(), Some(5));
        assert_eq!(q.get("x"), Some("%zz"));
        assert!(q.int("watch").is_ok());
        assert!(Query::parse(Some("limit=abc")).int("limit").is_err());
    }
}

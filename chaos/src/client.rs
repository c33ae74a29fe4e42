//! The workload's HTTP client: short timeouts (a paused or partitioned node must not hold a
//! worker for long), and every answer classified as the history needs it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::Method;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::history::Kind;

/// Connect timeout: a node that does not accept in this long was not reached (the request was
/// never sent, so it certainly did not happen).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What one request came to.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Ok, Fail (certainly not done) or Unknown (maybe done).
    pub kind: Kind,
    /// The HTTP status, if one came back.
    pub status: Option<u16>,
    /// The `result` of a 200, else the body or the error text.
    pub body: Value,
}

impl Answer {
    pub fn ok(&self) -> bool {
        self.kind == Kind::Ok
    }

    /// What the history keeps of it.
    pub fn summary(&self) -> Value {
        match self.kind {
            Kind::Ok => self.body.clone(),
            _ => json!({"status": self.status, "error": self.body}),
        }
    }
}

/// How a status answers a request: 200 done; a 4xx a definite refusal (bad request, not found,
/// conflict, quota); a 5xx maybe done (a write may be applied on some replicas before the
/// primary gives up, a forwarded request may have reached the primary).
pub fn classify_status(status: u16) -> Kind {
    match status {
        200..=299 => Kind::Ok,
        400..=499 if status != 408 => Kind::Fail,
        _ => Kind::Unknown,
    }
}

/// A client for one node.
#[derive(Clone)]
pub struct NodeClient {
    pub node: u64,
    base: String,
    http: Client,
}

impl NodeClient {
    /// A client for node `node` at `addr`, whose requests give up after `timeout`.
    pub fn new(node: u64, addr: SocketAddr, timeout: Duration) -> Result<NodeClient> {
        let http = Client::builder()
            .timeout(timeout)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_max_idle_per_host(2)
            .build()
            .context("build the workload's HTTP client")?;
        Ok(NodeClient {
            node,
            base: format!("http://{addr}"),
            http,
        })
    }

    /// Sends `body` and classifies the answer. A connection that could not be made is a
    /// certain failure; a timeout or a connection broken after the request was sent is unknown.
    pub fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(b);
        }
        match req.send() {
            Err(e) => Answer {
                kind: if e.is_connect() && !e.is_timeout() {
                    Kind::Fail
                } else {
                    Kind::Unknown
                },
                status: None,
                body: Value::String(error_text(&e)),
            },
            Ok(resp) => {
                let status = resp.status().as_u16();
                match resp.text() {
                    Err(e) => Answer {
                        kind: Kind::Unknown.max_with(classify_status(status)),
                        status: Some(status),
                        body: Value::String(error_text(&e)),
                    },
                    Ok(text) => {
                        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
                        let kind = classify_status(status);
                        let body = if kind == Kind::Ok {
                            v.get("result").cloned().unwrap_or(v)
                        } else {
                            v
                        };
                        Answer {
                            kind,
                            status: Some(status),
                            body,
                        }
                    }
                }
            }
        }
    }

    pub fn put(&self, path: &str, body: &Value) -> Answer {
        self.call(Method::PUT, path, Some(body))
    }

    pub fn post(&self, path: &str, body: &Value) -> Answer {
        self.call(Method::POST, path, Some(body))
    }
}

impl Kind {
    /// A 200 whose body could not be read still happened; anything else read badly is unknown.
    fn max_with(self, status_kind: Kind) -> Kind {
        if status_kind == Kind::Ok {
            Kind::Ok
        } else {
            self
        }
    }
}

fn error_text(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    for _ in 0..8 {
        let Some(inner) = src else { break };
        s += &format!(": {inner}");
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_as_the_history_needs() {
        assert_eq!(classify_status(200), Kind::Ok);
        assert_eq!(classify_status(400), Kind::Fail);
        assert_eq!(classify_status(404), Kind::Fail);
        assert_eq!(classify_status(429), Kind::Fail);
        assert_eq!(classify_status(408), Kind::Unknown);
        assert_eq!(classify_status(500), Kind::Unknown);
        assert_eq!(classify_status(503), Kind::Unknown);
    }

    #[test]
    fn a_refused_connection_is_a_failure_not_an_unknown() {
        let port = tessera_tests::free_port().expect("port");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let c = NodeClient::new(1, addr, Duration::from_secs(2)).expect("client");
        let a = c.put("/collections/c/points", &json!({}));
        assert_eq!(a.kind, Kind::Fail, "{a:?}");
    }

    #[test]
    fn a_timeout_after_sending_is_unknown() {
        // a listener that accepts and never answers
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let c = NodeClient::new(1, addr, Duration::from_millis(300)).expect("client");
        let a = c.put("/collections/c/points", &json!({}));
        assert_eq!(a.kind, Kind::Unknown, "{a:?}");
        drop(l);
    }
}

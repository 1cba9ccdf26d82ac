//! tcp-log: each finished request's log entry written to a TCP server as a line of JSON
//! (Kong's kong/plugins/tcp-log), optionally over TLS (`tls`, `tls_sni`; the certificate is
//! not verified, as Kong's `sslhandshake(false, sni, false)`). Where Kong opens a timer per
//! entry, entries here wait in a bounded queue (`log_queue`) and go over one kept-alive
//! connection, several per write when they pile up; a connection idle for `keepalive`
//! milliseconds is closed, a failed one is opened again for the next batch.
use super::http_log::NO_LUA;
use super::log_queue::{self, Deliver, Policy};
use super::{get_bool, get_str, get_u64, Handler, PluginSpec};
use crate::model::schema::{field, FieldErrors, Ty};
use serde_json::{json, Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncWrite, AsyncWriteExt};

pub const SPEC: PluginSpec = PluginSpec {
    name: "tcp-log",
    priority: 7,
    no_consumer: false,
    fields: &[
        field("host", Ty::Str),
        field("port", PORT),
        field("timeout", MILLISECONDS),
        field("keepalive", MILLISECONDS),
        field("tls", Ty::Bool),
        field("tls_sni", Ty::Str),
        field("custom_fields_by_lua", Ty::NullOnly(NO_LUA)),
    ],
    defaults,
    validate,
    build,
};

pub const PORT: Ty = Ty::Int {
    min: 0,
    max: 65_535,
};
pub const MILLISECONDS: Ty = Ty::Number {
    min: 0.0,
    max: 2_147_483_646.0,
};

fn defaults() -> Map<String, Value> {
    let d = json!({"host": null, "port": null, "timeout": 10000, "keepalive": 60000,
        "tls": false, "tls_sni": null, "custom_fields_by_lua": null});
    d.as_object().cloned().unwrap_or_default()
}

/// `host` and `port` are required (tcp-log's and udp-log's rule).
pub fn validate(c: &mut Map<String, Value>, errors: &mut FieldErrors) {
    for required in ["host", "port"] {
        if c.get(required).is_none_or(Value::is_null) {
            errors.add(required, "required field missing");
        }
    }
}

/// How tcp-log and udp-log queue entries: up to 1,000 a batch, no waiting for more, a failed
/// batch tried again for up to a second.
pub fn policy() -> Policy {
    Policy {
        max_batch_size: 1000,
        max_coalescing_delay: Duration::ZERO,
        max_entries: 10_000,
        max_bytes: None,
        max_retry_time: Duration::from_secs(1),
        initial_retry_delay: Duration::from_millis(10),
        max_retry_delay: Duration::from_millis(500),
    }
}

/// `host:port` of a checked config.
pub fn destination(c: &Map<String, Value>) -> String {
    let host = get_str(c, "host").unwrap_or("");
    let port = get_u64(c, "port").unwrap_or(0);
    crate::model::target::format(host, port as u16)
}

/// A config's milliseconds field as a duration.
pub fn millis(c: &Map<String, Value>, k: &str, default: f64) -> Duration {
    Duration::from_secs_f64(c.get(k).and_then(Value::as_f64).unwrap_or(default).max(0.0) / 1000.0)
}

fn build(
    c: &Map<String, Value>,
    _: &super::chain::Scope,
    shared: &Arc<super::Shared>,
) -> Result<Arc<dyn Handler>, String> {
    let delivery = Delivery {
        address: destination(c),
        tls: get_bool(c, "tls").then(|| {
            get_str(c, "tls_sni")
                .unwrap_or(get_str(c, "host").unwrap_or(""))
                .to_string()
        }),
        timeout: millis(c, "timeout", 10_000.0),
        keepalive: millis(c, "keepalive", 60_000.0),
        conn: None,
    };
    log_queue::shipper(shared, ("tcp-log", c), destination(c), &policy(), || {
        Ok(Box::new(delivery))
    })
}

type Stream = Pin<Box<dyn AsyncWrite + Send + Sync>>;

struct Delivery {
    address: String,
    /// The SNI to send when the connection is TLS.
    tls: Option<String>,
    timeout: Duration,
    keepalive: Duration,
    /// The open connection and when it was last used.
    conn: Option<(Stream, Instant)>,
}

impl Delivery {
    async fn connect(&self) -> Result<Stream, String> {
        let tcp = tokio::net::TcpStream::connect(&self.address)
            .await
            .map_err(|e| format!("failed to connect to {}: {e}", self.address))?;
        let _ = tcp.set_nodelay(true);
        let Some(sni) = &self.tls else {
            return Ok(Box::pin(tcp));
        };
        let config = Arc::new(crate::tls::client::unverified());
        let name = rustls_pki_types::ServerName::try_from(sni.clone())
            .map_err(|e| format!("tls_sni {sni}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("failed to perform TLS handshake to {}: {e}", self.address))?;
        Ok(Box::pin(tls))
    }
}

impl Deliver for Delivery {
    fn deliver<'a>(
        &'a mut self,
        batch: &'a [bytes::Bytes],
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            let (timeout, address) = (self.timeout, self.address.clone());
            let write = async {
                let stale = self
                    .conn
                    .as_ref()
                    .is_some_and(|(_, at)| at.elapsed() > self.keepalive);
                let mut stream = match self.conn.take() {
                    Some((s, _)) if !stale => s,
                    _ => self.connect().await?,
                };
                stream
                    .write_all(&batch.concat())
                    .await
                    .map_err(|e| format!("failed to send data to {}: {e}", self.address))?;
                stream.flush().await.map_err(|e| e.to_string())?;
                self.conn = Some((stream, Instant::now()));
                Ok(())
            };
            tokio::time::timeout(timeout, write)
                .await
                .map_err(|_| format!("sending to {address} timed out"))?
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::plugins::checked_config;
    use serde_json::json;

    // spec/03-plugins/01-tcp-log (schema): host and port required, a port in range.
    #[test]
    fn schema_follows_kong() {
        let c = checked_config("tcp-log", json!({"host": "127.0.0.1", "port": 9999})).unwrap();
        assert_eq!(
            (c["timeout"].as_f64(), c["tls"].as_bool()),
            (Some(10000.0), Some(false))
        );
        let e = checked_config("tcp-log", json!({})).unwrap_err();
        assert_eq!(e["host"], "required field missing");
        assert_eq!(e["port"], "required field missing");
        let e = checked_config("tcp-log", json!({"host": "h", "port": 65536})).unwrap_err();
        assert_eq!(e["port"], "value should be between 0 and 65535");
    }
}

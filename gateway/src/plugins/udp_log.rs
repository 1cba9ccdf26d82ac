//! udp-log: each finished request's log entry sent to a UDP server as one datagram of JSON
//! (Kong's kong/plugins/udp-log). Entries wait in a bounded queue (`log_queue`) and go from
//! one socket; a datagram the network loses is lost, as with Kong.
use super::http_log::NO_LUA;
use super::log_queue::{self, Deliver};
use super::tcp_log::{destination, millis, policy, MILLISECONDS, PORT};
use super::{Handler, PluginSpec};
use crate::model::schema::{field, Ty};
use serde_json::{json, Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub const SPEC: PluginSpec = PluginSpec {
    name: "udp-log",
    priority: 8,
    no_consumer: false,
    fields: &[
        field("host", Ty::Str),
        field("port", PORT),
        field("timeout", MILLISECONDS),
        field("custom_fields_by_lua", Ty::NullOnly(NO_LUA)),
    ],
    defaults,
    validate: super::tcp_log::validate,
    build,
};

fn defaults() -> Map<String, Value> {
    let d = json!({"host": null, "port": null, "timeout": 10000, "custom_fields_by_lua": null});
    d.as_object().cloned().unwrap_or_default()
}

fn build(
    c: &Map<String, Value>,
    _: &super::chain::Scope,
    shared: &Arc<super::Shared>,
) -> Result<Arc<dyn Handler>, String> {
    let delivery = Delivery {
        address: destination(c),
        timeout: millis(c, "timeout", 10_000.0),
        socket: None,
    };
    log_queue::shipper(shared, ("udp-log", c), destination(c), &policy(), || {
        Ok(Box::new(delivery))
    })
}

struct Delivery {
    address: String,
    timeout: Duration,
    socket: Option<tokio::net::UdpSocket>,
}

impl Delivery {
    async fn socket(&mut self) -> Result<&tokio::net::UdpSocket, String> {
        if self.socket.is_none() {
            let target = tokio::net::lookup_host(&self.address)
                .await
                .map_err(|e| format!("cannot resolve {}: {e}", self.address))?
                .next()
                .ok_or_else(|| format!("{} has no address", self.address))?;
            let local = if target.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            let socket = tokio::net::UdpSocket::bind(local)
                .await
                .map_err(|e| e.to_string())?;
            socket.connect(target).await.map_err(|e| e.to_string())?;
            self.socket = Some(socket);
        }
        self.socket.as_ref().ok_or_else(|| "no socket".to_string())
    }
}

impl Deliver for Delivery {
    fn deliver<'a>(
        &'a mut self,
        batch: &'a [bytes::Bytes],
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            let timeout = self.timeout;
            let address = self.address.clone();
            let send = async {
                let socket = self.socket().await?;
                for entry in batch {
                    socket
                        .send(entry)
                        .await
                        .map_err(|e| format!("could not send data to {address}: {e}"))?;
                }
                Ok::<(), String>(())
            };
            let sent = tokio::time::timeout(timeout, send)
                .await
                .unwrap_or_else(|_| Err(format!("sending to {address} timed out")));
            if sent.is_err() {
                self.socket = None;
            }
            sent
        })
    }
}

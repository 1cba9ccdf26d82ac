//! The two ends of deploy/bench/websocket.sh, on tokio-tungstenite: an echo backend, and a
//! load client that keeps `CONNS` connections each sending one message and waiting for its
//! echo, in a loop, and prints `messages/s p50 p99` (latencies as wrk prints them).
//!
//!   tollgate-bench-websocket echo ADDR
//!   tollgate-bench-websocket load URL CONNS SECONDS SIZE
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("echo") if args.len() == 3 => echo(&args[2]).await,
        Some("load") if args.len() == 6 => {
            let number = |i: usize| args[i].parse::<u64>().expect("a number");
            load(&args[2], number(3), number(4), number(5) as usize).await
        }
        _ => {
            eprintln!("usage: echo ADDR | load URL CONNS SECONDS SIZE");
            std::process::exit(2);
        }
    }
}

/// Echoes every data message on every connection.
async fn echo(addr: &str) {
    let listener = TcpListener::bind(addr).await.expect("bind");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            while let Some(Ok(message)) = ws.next().await {
                if message.is_binary() || message.is_text() {
                    if ws.send(message).await.is_err() {
                        return;
                    }
                } else if message.is_close() {
                    return;
                }
            }
        });
    }
}

/// Runs the connections for `seconds` and prints the rate and latency percentiles.
async fn load(url: &str, conns: u64, seconds: u64, size: usize) {
    let until = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..conns)
        .map(|_| tokio::spawn(one_connection(url.to_string(), until, size)))
        .collect();
    let started = Instant::now();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("a connection's task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "{:.0} {:.2}us {:.2}us",
        latencies.len() as f64 / elapsed,
        at(0.5),
        at(0.99)
    );
}

/// One connection's round trips until `until`: each one's latency in microseconds.
async fn one_connection(url: String, until: Instant, size: usize) -> Vec<f64> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("the WebSocket handshake");
    let payload = vec![b'x'; size];
    let mut latencies = Vec::new();
    while Instant::now() < until {
        let sent = Instant::now();
        ws.send(Message::binary(payload.clone()))
            .await
            .expect("send");
        match ws.next().await {
            Some(Ok(m)) if m.len() == size => {}
            other => panic!("no echo: {other:?}"),
        }
        latencies.push(sent.elapsed().as_secs_f64() * 1e6);
    }
    let _ = ws.close(None).await;
    latencies
}

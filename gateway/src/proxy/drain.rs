//! Graceful shutdown of a worker's connections: once the gateway stops, each open connection
//! finishes the request it is serving and closes; idle keep-alive connections close at once.
//!
//! hyper-util's `GracefulShutdown` does the same by polling a watch channel on every poll of
//! every connection (two per proxied request). Here a connection reads one flag per poll, and
//! the drain wakes the connections itself: each hands over its task's waker once.
use pin_project_lite::pin_project;
use slab::Slab;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use tokio::sync::Notify;

/// The open connections of one worker.
#[derive(Clone, Default)]
pub struct Drain {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    draining: AtomicBool,
    /// One entry per watched connection: its task's waker, once it has been polled.
    open: Mutex<Slab<Option<Waker>>>,
    /// Signalled when the last connection closes during the drain.
    all_closed: Notify,
}

impl Shared {
    fn open(&self) -> MutexGuard<'_, Slab<Option<Waker>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drain {
    /// `conn`, which the drain asks with `close_when_idle` to finish its current request and
    /// close, and waits for.
    pub fn watch<C: Future>(&self, conn: C, close_when_idle: fn(Pin<&mut C>)) -> Watched<C> {
        let key = self.shared.open().insert(None);
        Watched {
            conn,
            close_when_idle,
            entry: Entry {
                shared: self.shared.clone(),
                key,
            },
            waker_given: false,
            closing: false,
        }
    }

    /// Asks every watched connection to close when idle and waits until all have.
    pub async fn run(&self) {
        self.shared.draining.store(true, Ordering::SeqCst);
        for waker in self.shared.open().iter().filter_map(|(_, w)| w.as_ref()) {
            waker.wake_by_ref();
        }
        while !self.shared.open().is_empty() {
            self.shared.all_closed.notified().await;
        }
    }
}

/// A connection's place in the drain, given back when the connection ends.
struct Entry {
    shared: Arc<Shared>,
    key: usize,
}

impl Drop for Entry {
    fn drop(&mut self) {
        let mut open = self.shared.open();
        open.remove(self.key);
        if open.is_empty() && self.shared.draining.load(Ordering::SeqCst) {
            self.shared.all_closed.notify_one();
        }
    }
}

pin_project! {
    /// A connection the drain will close.
    pub struct Watched<C> {
        #[pin]
        conn: C,
        close_when_idle: fn(Pin<&mut C>),
        entry: Entry,
        waker_given: bool,
        closing: bool,
    }
}

impl<C: Future> Future for Watched<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let mut this = self.project();
        if !*this.closing {
            if !*this.waker_given {
                // A task's waker stays the same for its life: handing it over once is enough.
                this.entry.shared.open()[this.entry.key] = Some(cx.waker().clone());
                *this.waker_given = true;
            }
            if this.entry.shared.draining.load(Ordering::SeqCst) {
                *this.closing = true;
                (this.close_when_idle)(this.conn.as_mut());
            }
        }
        this.conn.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A connection that is busy until told to close, then ends on its next poll.
    #[derive(Default)]
    struct Fake {
        told: bool,
    }

    impl Future for Fake {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            if self.told {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    fn tell(mut conn: Pin<&mut Fake>) {
        conn.told = true;
    }

    #[tokio::test]
    async fn the_drain_wakes_idle_connections_and_waits_until_all_have_closed() {
        let drain = Drain::default();
        let idle = tokio::spawn(drain.watch(Fake::default(), tell));
        let not_yet_polled = drain.watch(Fake::default(), tell);
        tokio::task::yield_now().await;
        let draining = tokio::spawn({
            let drain = drain.clone();
            async move { drain.run().await }
        });
        tokio::time::timeout(Duration::from_secs(1), idle)
            .await
            .expect("the idle connection was woken and closed")
            .unwrap();
        tokio::task::yield_now().await;
        assert!(!draining.is_finished(), "one connection is still open");
        not_yet_polled.await;
        tokio::time::timeout(Duration::from_secs(1), draining)
            .await
            .expect("the drain ended with the last connection")
            .unwrap();
    }

    #[tokio::test]
    async fn a_drain_with_no_connections_ends_at_once() {
        tokio::time::timeout(Duration::from_secs(1), Drain::default().run())
            .await
            .unwrap();
    }
}

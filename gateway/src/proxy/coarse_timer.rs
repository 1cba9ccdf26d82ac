//! A clock read once a second, and a timer on it for hyper's HTTP/1 header-read timeout.
//!
//! hyper arms that timeout before it reads each request head, on every keep-alive request:
//! with tokio's timer that is a clock read, a boxed `Sleep` put into the timer wheel and taken
//! out again, about 600 instructions per request (callgrind). A timeout of seconds needs none
//! of that precision. Here each proxy worker runs `tick`, which reads the clock once a second;
//! sleeps read that clock, wait in a per-thread slab, and are woken by the tick that finds
//! their deadline passed. A timeout thus fires up to a second late, never early.
//! The upstream pool dates its idle connections on the same clock (two clock reads fewer per
//! request), and a request's wall-clock arrival is the tick's wall clock plus the monotonic
//! time since (one clock read fewer per request; a clock read costs tens of nanoseconds here).
use hyper::rt::{Sleep, Timer};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often `tick` reads the clock and wakes the sleeps that are due.
pub const TICK: Duration = Duration::from_secs(1);

/// A waiting sleep: its deadline, who to wake, and the key of the sleep that owns the slot.
struct Waiting {
    deadline: Instant,
    waker: Waker,
    key: u64,
}

/// This thread's clock and waiting sleeps.
#[derive(Default)]
struct Clock {
    /// The last tick's reading; `None` until this thread's first tick.
    now: Option<Instant>,
    /// The monotonic and the wall clock, read together at the last tick.
    wall: Option<(Instant, SystemTime)>,
    slots: Vec<Option<Waiting>>,
    free: Vec<usize>,
    next_key: u64,
}

thread_local! {
    static CLOCK: RefCell<Clock> = RefCell::default();
}

impl Clock {
    fn now(&self) -> Instant {
        self.now.unwrap_or_else(Instant::now)
    }

    /// Waits in a free slot; returns the slot and its key.
    fn wait(&mut self, deadline: Instant, waker: Waker) -> (usize, u64) {
        let key = self.next_key;
        self.next_key += 1;
        let waiting = Some(Waiting {
            deadline,
            waker,
            key,
        });
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i] = waiting;
                i
            }
            None => {
                self.slots.push(waiting);
                self.slots.len() - 1
            }
        };
        (slot, key)
    }

    /// The sleep with `key` in `slot`, if it still waits there.
    fn waiting(&mut self, slot: usize, key: u64) -> Option<&mut Waiting> {
        self.slots.get_mut(slot)?.as_mut().filter(|w| w.key == key)
    }

    fn leave(&mut self, slot: usize, key: u64) {
        if self.waiting(slot, key).is_some() {
            self.slots[slot] = None;
            self.free.push(slot);
        }
    }

    /// Reads the clock; returns the wakers of the sleeps now due, out of their slots.
    fn advance(&mut self, now: Instant) -> Vec<Waker> {
        self.now = Some(now);
        let mut due = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(|w| w.deadline <= now) {
                due.extend(slot.take().map(|w| w.waker));
                self.free.push(i);
            }
        }
        due
    }
}

/// This thread's clock: the last tick's reading (the system's clock on a thread without ticks).
pub fn now() -> Instant {
    CLOCK.with(|c| c.borrow().now())
}

/// Microseconds since the Unix epoch at `at`, a moment since this thread's last tick: the
/// wall clock read at that tick plus the monotonic time since, so a wall-clock step shows
/// within a `TICK`. Reads the wall clock on a thread without ticks.
pub fn unix_micros(at: Instant) -> u64 {
    let wall = CLOCK.with(|c| c.borrow().wall);
    let since_tick =
        wall.and_then(|(base, wall)| wall.checked_add(at.checked_duration_since(base)?));
    let at = since_tick.unwrap_or_else(SystemTime::now);
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Reads this thread's clock every `TICK` and wakes the sleeps that are due; runs until the
/// worker's runtime ends.
pub async fn tick() {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = interval.tick().await.into_std();
        let wall = (Instant::now(), SystemTime::now());
        CLOCK.with(|c| c.borrow_mut().wall = Some(wall));
        for waker in CLOCK.with(|c| c.borrow_mut().advance(now)) {
            waker.wake();
        }
    }
}

/// hyper's timer on the proxy's HTTP/1 connections. Only for threads that run `tick`: a
/// sleep elsewhere would never be woken.
#[derive(Clone, Copy, Debug, Default)]
pub struct CoarseTimer;

impl Timer for CoarseTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(CoarseSleep {
            deadline,
            slot: None,
        })
    }

    fn now(&self) -> Instant {
        now()
    }
}

/// A sleep on this thread's clock.
struct CoarseSleep {
    deadline: Instant,
    /// Its slot and key once it waits.
    slot: Option<(usize, u64)>,
}

impl Future for CoarseSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        CLOCK.with(|c| {
            let mut clock = c.borrow_mut();
            if clock.now() >= this.deadline {
                return Poll::Ready(());
            }
            let waiting = this.slot.and_then(|(slot, key)| clock.waiting(slot, key));
            match waiting {
                Some(w) => w.waker.clone_from(cx.waker()),
                None => this.slot = Some(clock.wait(this.deadline, cx.waker().clone())),
            }
            Poll::Pending
        })
    }
}

impl Sleep for CoarseSleep {}

impl Drop for CoarseSleep {
    fn drop(&mut self) {
        if let Some((slot, key)) = self.slot {
            // During a thread's teardown its clock may be gone already: nothing to leave then.
            let _ = CLOCK.try_with(|c| c.borrow_mut().leave(slot, key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting() -> usize {
        CLOCK.with(|c| c.borrow().slots.iter().flatten().count())
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_ends_on_the_first_tick_past_its_deadline() {
        let ticker = tokio::spawn(tick());
        tokio::task::yield_now().await;
        let start = tokio::time::Instant::now();
        CoarseTimer.sleep(Duration::from_millis(2500)).await;
        // Ticks come each second: the one at 3 s is the first past 2.5 s.
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        assert_eq!(waiting(), 0);
        ticker.abort();
    }

    #[tokio::test]
    async fn wall_clock_micros_follow_the_ticks_wall_clock() {
        let unix_now = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_micros() as u64
        };
        // Without ticks on this thread: the wall clock itself.
        let (before, at) = (unix_now(), unix_micros(Instant::now()));
        assert!(at >= before && at <= unix_now());
        let ticker = tokio::spawn(tick());
        // The first tick is due at once; the runtime's timer runs it within a few turns.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (base, wall) = CLOCK.with(|c| c.borrow().wall).expect("the first tick ran");
        let later = base + Duration::from_millis(1500);
        let expected = wall.duration_since(UNIX_EPOCH).unwrap().as_micros() as u64 + 1_500_000;
        assert_eq!(unix_micros(later), expected);
        // A moment before the tick falls back to the wall clock.
        assert!(unix_micros(base - Duration::from_secs(60)) >= before);
        ticker.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_sleep_leaves_its_slot_for_the_next() {
        let ticker = tokio::spawn(tick());
        tokio::task::yield_now().await;
        for _ in 0..100 {
            let sleep = CoarseTimer.sleep(Duration::from_secs(30));
            assert!(tokio::time::timeout(Duration::from_millis(10), sleep)
                .await
                .is_err());
        }
        // Each waited, then was dropped by the timeout: one slot served them all.
        assert_eq!(waiting(), 0);
        assert_eq!(CLOCK.with(|c| c.borrow().slots.len()), 1);
        ticker.abort();
    }
}

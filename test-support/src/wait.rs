//! Bounded waits: poll a condition until it holds or a deadline passes, then fail naming what
//! was awaited. For things that happen asynchronously (a kernel destroying a namespace's links,
//! a carrier coming up, a process exiting) where no event can be awaited directly; the short
//! pause between polls is the poll interval, never a guess that something has happened.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// The pause between two polls: short at first, growing to at most this.
const MAX_PAUSE: Duration = Duration::from_millis(100);

fn next_pause(pause: Duration) -> Duration {
    (pause * 2).min(MAX_PAUSE)
}

/// Poll `condition` until it returns true, for at most `deadline` from now; panics with
/// "timed out after … waiting for `what`" otherwise.
#[track_caller]
pub fn wait_until(deadline: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    wait_for(deadline, what, || if condition() { Ok(()) } else { Err("not yet") })
}

/// Poll `poll` until it returns `Ok`, for at most `deadline` from now, and return its value;
/// panics with `what` and the last `Err` (the state last seen) otherwise.
#[track_caller]
pub fn wait_for<T, E: Debug>(deadline: Duration, what: &str, poll: impl FnMut() -> Result<T, E>) -> T {
    match poll_for(deadline, poll) {
        Ok(v) => v,
        Err(last) => panic!("timed out after {deadline:?} waiting for {what}; last seen: {last:?}"),
    }
}

/// Poll `poll` until it returns `Ok`, for at most `deadline` from now: its value, or the last
/// `Err` when the deadline passed (for a caller that handles the timeout itself).
pub fn poll_for<T, E>(deadline: Duration, mut poll: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let end = Instant::now() + deadline;
    let mut pause = Duration::from_millis(2);
    loop {
        let last = match poll() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let now = Instant::now();
        if now >= end {
            return Err(last);
        }
        std::thread::sleep(pause.min(end - now));
        pause = next_pause(pause);
    }
}

/// [`wait_until`] for an async condition (`async || …`), pausing with the tokio timer.
#[track_caller]
pub fn wait_until_async<'a>(
    deadline: Duration,
    what: &'a str,
    mut condition: impl AsyncFnMut() -> bool + 'a,
) -> impl std::future::Future<Output = ()> + 'a {
    let caller = std::panic::Location::caller();
    async move {
        wait_for_async_at(caller, deadline, what, async || {
            if condition().await {
                Ok(())
            } else {
                Err("not yet")
            }
        })
        .await
    }
}

/// [`wait_for`] for an async poll (`async || …`), pausing with the tokio timer.
#[track_caller]
pub fn wait_for_async<'a, T: 'a, E: Debug + 'a>(
    deadline: Duration,
    what: &'a str,
    poll: impl AsyncFnMut() -> Result<T, E> + 'a,
) -> impl std::future::Future<Output = T> + 'a {
    wait_for_async_at(std::panic::Location::caller(), deadline, what, poll)
}

async fn wait_for_async_at<T, E: Debug>(
    caller: &'static std::panic::Location<'static>,
    deadline: Duration,
    what: &str,
    poll: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    match poll_for_async(deadline, poll).await {
        Ok(v) => v,
        Err(last) => panic!("{caller}: timed out after {deadline:?} waiting for {what}; last seen: {last:?}"),
    }
}

/// [`poll_for`] for an async poll (`async || …`), pausing with the tokio timer.
pub async fn poll_for_async<T, E>(deadline: Duration, mut poll: impl AsyncFnMut() -> Result<T, E>) -> Result<T, E> {
    let end = Instant::now() + deadline;
    let mut pause = Duration::from_millis(2);
    loop {
        let last = match poll().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let now = Instant::now();
        if now >= end {
            return Err(last);
        }
        tokio::time::sleep(pause.min(end - now)).await;
        pause = next_pause(pause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_once_the_condition_holds() {
        let mut n = 0;
        wait_until(Duration::from_secs(5), "three polls", || {
            n += 1;
            n == 3
        });
        assert_eq!(n, 3);
        let v = wait_for(Duration::from_secs(5), "a value", || {
            if n < 5 {
                n += 1;
                Err(n)
            } else {
                Ok(n * 10)
            }
        });
        assert_eq!(v, 50);
        assert_eq!(poll_for(Duration::from_millis(20), || Err::<(), _>(n)), Err(5));
    }

    #[test]
    #[should_panic(expected = "timed out after 50ms waiting for the impossible; last seen: 7")]
    fn panics_with_what_and_the_last_state() {
        wait_for(Duration::from_millis(50), "the impossible", || Err::<(), _>(7));
    }

    #[tokio::test]
    async fn async_forms() {
        let mut n = 0;
        wait_until_async(Duration::from_secs(5), "two polls", async || {
            n += 1;
            n == 2
        })
        .await;
        assert_eq!(n, 2);
        let got = wait_for_async(Duration::from_secs(5), "ok", async || Ok::<_, ()>(4)).await;
        assert_eq!(got, 4);
        let timed_out = poll_for_async(Duration::from_millis(20), async || Err::<(), _>("last")).await;
        assert_eq!(timed_out, Err("last"));
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for never")]
    async fn async_timeout_panics() {
        wait_until_async(Duration::from_millis(20), "never", async || false).await;
    }
}

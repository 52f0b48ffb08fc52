//! Waiting out a peer that is not up yet: a node agent may start before etcd does, and should
//! wait for it rather than exit. One loop for every such connection.

use std::future::Future;
use std::time::Duration;

/// The first pause of [`until_up`]; it doubles up to [`MAX_PAUSE`].
pub const FIRST_PAUSE: Duration = Duration::from_millis(200);
/// The longest pause of [`until_up`].
pub const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Call `attempt` until it succeeds or fails with an error `transient` does not accept (that
/// error is returned at once), pausing [`FIRST_PAUSE`], then twice as long each time up to
/// [`MAX_PAUSE`]; each transient failure is logged as a warning naming `what`.
///
/// ```no_run
/// # async fn f() -> Result<(), std::io::Error> {
/// let conn = netkit_core::retry::until_up(
///     "etcd",
///     || async { tokio::net::TcpStream::connect("10.0.0.1:2379").await },
///     |e: &std::io::Error| e.kind() == std::io::ErrorKind::ConnectionRefused,
/// )
/// .await?;
/// # Ok(()) }
/// ```
pub async fn until_up<T, E, F, Fut>(what: &str, mut attempt: F, transient: impl Fn(&E) -> bool) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut pause = FIRST_PAUSE;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if transient(&e) => {
                log::warn!(target: "netkit::retry", "{what}: {e}; trying again in {pause:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn transient_failures_are_waited_out_and_others_returned() {
        let calls = AtomicU32::new(0);
        let r: Result<u32, String> = until_up(
            "peer",
            || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 | 1 => Err("not up".to_string()),
                    n => Ok(n),
                }
            },
            |e: &String| e == "not up",
        )
        .await;
        assert_eq!(r, Ok(2));
        let r: Result<u32, String> = until_up(
            "peer",
            || async { Err("bad config".to_string()) },
            |e: &String| e == "not up",
        )
        .await;
        assert_eq!(r, Err("bad config".to_string()));
    }
}

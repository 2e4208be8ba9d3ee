//! Looking up a receiver's name within a send's deadline.
//!
//! The system's resolver (`getaddrinfo`) blocks and takes no timeout: a
//! name server that does not answer holds it for the resolver's own
//! retries, tens of seconds. A send must end by its deadline (shutdown's
//! final delivery promises a bounded wait), so a name is looked up on a
//! thread of its own and the send waits for it only until the deadline.
//! A lookup given up on finishes on its thread and is dropped; at most
//! [`MAX_LOOKUPS_IN_FLIGHT`] run at once (a send waits for room within
//! its deadline), so a resolver that hangs for good costs a few parked
//! threads, not one per send.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{SendError, slice, stopped};

/// Lookups on their threads at most: more wait on a hung resolver than
/// any healthy one ever has, and each is a parked thread.
const MAX_LOOKUPS_IN_FLIGHT: usize = 4;

/// Lookup threads not yet finished, across every sender.
static LOOKUPS_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// How a name becomes addresses: the system's resolver, or a scripted one
/// in the tests.
type Lookup = fn(&str) -> io::Result<Vec<SocketAddr>>;

/// The system's resolver.
fn system_lookup(authority: &str) -> io::Result<Vec<SocketAddr>> {
    Ok(authority.to_socket_addrs()?.collect())
}

/// The addresses of `authority` (`host:port`), found before `deadline`
/// and before `stop` says to stop. An IP literal is taken as it is, with
/// no thread.
pub(super) fn resolve(
    authority: &str,
    deadline: Instant,
    stop: Option<&dyn Fn() -> bool>,
) -> Result<Vec<SocketAddr>, SendError> {
    resolve_with(authority, deadline, stop, system_lookup, &LOOKUPS_IN_FLIGHT)
}

/// A lookup thread counted in `in_flight` from its start until it ends,
/// however it ends.
struct InFlight(&'static AtomicUsize);

impl InFlight {
    /// Counts one more lookup, unless [`MAX_LOOKUPS_IN_FLIGHT`] already run.
    fn claim(in_flight: &'static AtomicUsize) -> Option<Self> {
        // Relaxed: the count bounds threads, it orders no other memory.
        if in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_LOOKUPS_IN_FLIGHT {
            in_flight.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(InFlight(in_flight))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Relaxed: as in `claim`.
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// [`resolve`] with the lookup and the count of lookups in flight given.
fn resolve_with(
    authority: &str,
    deadline: Instant,
    stop: Option<&dyn Fn() -> bool>,
    lookup: Lookup,
    in_flight: &'static AtomicUsize,
) -> Result<Vec<SocketAddr>, SendError> {
    if let Ok(addr) = authority.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let failed = |reason: String| SendError::Resolve {
        authority: authority.to_owned(),
        reason,
    };
    let out_of_time = || SendError::Timeout {
        authority: authority.to_owned(),
    };
    let told_to_stop = || SendError::Stopped {
        authority: authority.to_owned(),
    };
    // A send waits its turn when earlier lookups fill the room: a slow
    // but healthy resolver frees it soon, and shutdown's final sends
    // must not fail at once behind the periodic ones it cut short.
    let claimed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(out_of_time());
        }
        if stopped(stop) {
            return Err(told_to_stop());
        }
        if let Some(claimed) = InFlight::claim(in_flight) {
            break claimed;
        }
        std::thread::sleep(left.min(Duration::from_millis(10)));
    };
    // Room for the answer: the thread never waits on a sender that left.
    let (answer, answered) = mpsc::sync_channel(1);
    let name = authority.to_owned();
    std::thread::Builder::new()
        .name("agentgate-resolve".into())
        .spawn(move || {
            let addrs = lookup(&name);
            drop(claimed);
            let _ = answer.send(addrs);
        })
        .map_err(|e| failed(format!("no thread to look it up: {e}")))?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(out_of_time());
        }
        match answered.recv_timeout(slice(left, stop)) {
            Ok(Ok(addrs)) => return Ok(addrs),
            Ok(Err(e)) => return Err(failed(e.to_string())),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if stopped(stop) {
                    return Err(told_to_stop());
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(failed("the lookup ended without an answer".to_owned()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_a_second(_: &str) -> io::Result<Vec<SocketAddr>> {
        std::thread::sleep(Duration::from_secs(1));
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], 9))])
    }

    #[test]
    fn a_resolver_slower_than_the_deadline_costs_the_deadline_and_no_more() {
        static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
        let start = Instant::now();
        let error = resolve_with(
            "receiver:9",
            start + Duration::from_millis(200),
            None,
            in_a_second,
            &IN_FLIGHT,
        )
        .expect_err("no answer in time");
        let took = start.elapsed();
        assert_eq!(error.kind(), "timeout", "{error}");
        assert!(took < Duration::from_millis(800), "{took:?}");
        // The lookup given up on still ends, and gives its room back.
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(IN_FLIGHT.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_lookup_told_to_stop_gives_up_before_its_deadline() {
        static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
        let start = Instant::now();
        let stop_at = start + Duration::from_millis(200);
        let error = resolve_with(
            "receiver:9",
            start + Duration::from_secs(30),
            Some(&|| Instant::now() >= stop_at),
            in_a_second,
            &IN_FLIGHT,
        )
        .expect_err("stopped");
        assert!(matches!(error, SendError::Stopped { .. }), "{error}");
        assert!(start.elapsed() < Duration::from_millis(800));
    }

    #[test]
    fn lookups_on_a_hung_resolver_are_bounded_and_the_next_waits_for_room() {
        static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
        let within = |ms| Instant::now() + Duration::from_millis(ms);
        let start = Instant::now();
        for _ in 0..MAX_LOOKUPS_IN_FLIGHT {
            let error = resolve_with("receiver:9", within(50), None, in_a_second, &IN_FLIGHT)
                .expect_err("too slow");
            assert_eq!(error.kind(), "timeout", "{error}");
        }
        assert_eq!(IN_FLIGHT.load(Ordering::Relaxed), MAX_LOOKUPS_IN_FLIGHT);
        // No room, and none frees before this deadline: no fifth thread.
        let error = resolve_with("receiver:9", within(50), None, in_a_second, &IN_FLIGHT)
            .expect_err("no room");
        assert_eq!(error.kind(), "timeout", "{error}");
        assert!(IN_FLIGHT.load(Ordering::Relaxed) <= MAX_LOOKUPS_IN_FLIGHT);
        // Room frees when the hung lookups end, and a send waiting for it
        // within its deadline gets its answer.
        let addrs = resolve_with("receiver:9", within(5000), None, in_a_second, &IN_FLIGHT)
            .expect("room freed in time");
        assert_eq!(addrs, vec![SocketAddr::from(([127, 0, 0, 1], 9))]);
        assert!(start.elapsed() >= Duration::from_secs(1));
    }

    #[test]
    fn an_ip_literal_needs_no_lookup() {
        static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
        fn never(_: &str) -> io::Result<Vec<SocketAddr>> {
            unreachable!("an IP literal is not looked up")
        }
        let past = Instant::now();
        for authority in ["127.0.0.1:9", "[::1]:9"] {
            let addrs = resolve_with(authority, past, None, never, &IN_FLIGHT).unwrap();
            assert_eq!(addrs, vec![authority.parse().unwrap()]);
        }
    }

    #[test]
    fn a_name_is_looked_up_by_the_system_resolver() {
        let far = Instant::now() + Duration::from_secs(10);
        let addrs = resolve("localhost:9", far, None).expect("localhost resolves");
        assert!(!addrs.is_empty());
        assert!(
            addrs.iter().all(|addr| addr.ip().is_loopback()),
            "{addrs:?}"
        );
    }
}

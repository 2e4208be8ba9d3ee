//! The HTTP server: one accept thread and a fixed pool of blocking workers.
//!
//! Why not tiny_http: tiny_http 0.12 spawns a thread for every connection
//! that finds no idle worker (a burst of clients means a burst of threads),
//! reads header lines with no length or count limit, sets no socket
//! timeouts, stops accepting for good after one `accept` error (such as
//! running out of file descriptors), and hides the socket of an upgraded
//! connection behind `Box<dyn ReadWrite>`, so a WebSocket layer could not
//! set its timeouts. Here connections wait in a bounded queue for one of a
//! fixed number of workers (a full queue is answered 503 at once), every
//! read and write has a deadline, the request head is parsed by `httparse`
//! within size limits, and upgrade handlers get the `TcpStream` itself.

pub(crate) mod http;
pub(crate) mod router;
pub(crate) mod routes;

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, TrySendError};

use http::{Limits, ReadError, Response};
use router::{Dispatch, Router};

/// Worker threads serving requests.
pub(crate) const DEFAULT_WORKERS: usize = 4;
/// Accepted connections waiting for a worker before new ones get a 503.
const BACKLOG: usize = 64;
/// How long the accept thread pauses after an error such as EMFILE.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

type Conn = (TcpStream, SocketAddr);

/// A running server. Stops on [`Server::stop`] or drop.
pub(crate) struct Server {
    local_addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `addr` and starts the accept thread and `workers` workers.
    pub(crate) fn start(
        addr: impl ToSocketAddrs,
        router: Router,
        limits: Limits,
        workers: usize,
    ) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let router = Arc::new(router);
        let (tx, rx) = crossbeam_channel::bounded::<Conn>(BACKLOG);
        let mut threads = Vec::with_capacity(workers + 1);
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let router = router.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("agentgate-obs-http-{i}"))
                .spawn(move || worker(&rx, &router, &limits));
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    drop(tx);
                    join_all(threads);
                    return Err(e);
                }
            }
        }
        let stop = stopping.clone();
        let spawned = std::thread::Builder::new()
            .name("agentgate-obs-accept".into())
            .spawn(move || {
                accept_loop(&listener, &stop, |conn| match tx.try_send(conn) {
                    Ok(()) => true,
                    Err(TrySendError::Full((stream, _))) => {
                        busy(stream);
                        true
                    }
                    Err(TrySendError::Disconnected(_)) => false,
                })
            });
        match spawned {
            Ok(thread) => threads.push(thread),
            Err(e) => {
                // The workers end when their channel closes (the sender is gone).
                join_all(threads);
                return Err(e);
            }
        }
        Ok(Server {
            local_addr,
            stopping,
            threads,
        })
    }

    /// The bound address (with the real port when 0 was asked for).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets the workers finish the requests they have,
    /// and joins every thread. Idempotent.
    pub(crate) fn stop(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        // Release: the accept thread that sees the flag stops; nothing else to publish.
        self.stopping.store(true, Ordering::Release);
        // Wake the accept thread out of `accept` with a connection of our own.
        let wake = match self.local_addr {
            SocketAddr::V4(a) if a.ip().is_unspecified() => {
                SocketAddr::from(([127, 0, 0, 1], a.port()))
            }
            SocketAddr::V6(a) if a.ip().is_unspecified() => {
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
            }
            addr => addr,
        };
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        join_all(std::mem::take(&mut self.threads));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn join_all(threads: Vec<JoinHandle<()>>) {
    for thread in threads {
        let _ = thread.join();
    }
}

fn accept_loop(
    listener: &TcpListener,
    stopping: &AtomicBool,
    mut hand_off: impl FnMut(Conn) -> bool,
) {
    loop {
        let accepted = listener.accept();
        // Acquire: pairs with `stop`.
        if stopping.load(Ordering::Acquire) {
            return;
        }
        match accepted {
            Ok(conn) => {
                if !hand_off(conn) {
                    return;
                }
            }
            // EMFILE, ENOBUFS, a connection reset before accept: keep serving.
            Err(_) => std::thread::sleep(ACCEPT_BACKOFF),
        }
    }
}

/// Answers 503 when every worker is busy and the backlog is full.
fn busy(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = Response::error(503, "the server is busy; retry shortly")
        .with_header("Retry-After", "1")
        .write_to(&mut stream, false);
}

fn worker(rx: &Receiver<Conn>, router: &Router, limits: &Limits) {
    for (stream, peer) in rx.iter() {
        // A panicking handler costs its connection, never the worker.
        let _ = catch_unwind(AssertUnwindSafe(|| serve(stream, peer, router, limits)));
    }
}

fn serve(mut stream: TcpStream, peer: SocketAddr, router: &Router, limits: &Limits) {
    let _ = stream.set_nodelay(true);
    if stream
        .set_write_timeout(Some(limits.write_timeout))
        .is_err()
    {
        return;
    }
    let (request, leftover) = match http::read_request(&mut stream, peer, limits) {
        Ok(read) => read,
        Err(ReadError::Gone) => return,
        Err(ReadError::Reject(status, message)) => {
            let _ = Response::error(status, message).write_to(&mut stream, false);
            http::close_gracefully(stream);
            return;
        }
    };
    if let Err(rejected) = http::discard_body(&mut stream, &request, leftover.len(), limits) {
        if let ReadError::Reject(status, message) = rejected {
            let _ = Response::error(status, message).write_to(&mut stream, false);
            http::close_gracefully(stream);
        }
        return;
    }
    let response = match router.dispatch(&request) {
        Dispatch::Upgrade(upgrade) => {
            let _ = stream.set_read_timeout(None);
            upgrade(request, stream, leftover);
            return;
        }
        Dispatch::Respond(response) => response,
    };
    let _ = response.write_to(&mut stream, request.method == "HEAD");
    let _ = stream.flush();
    http::close_gracefully(stream);
}

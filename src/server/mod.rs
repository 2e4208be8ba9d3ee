//! The HTTP server: one accept thread, one reader thread that gathers
//! requests without blocking ([`reader`]), and a fixed pool of workers that
//! only ever see complete requests.
//!
//! Why not tiny_http: tiny_http 0.12 spawns a thread for every connection
//! that finds no idle worker (a burst of clients means a burst of threads),
//! reads header lines with no length or count limit, sets no socket
//! timeouts, stops accepting for good after one `accept` error (such as
//! running out of file descriptors), and hides the socket of an upgraded
//! connection behind `Box<dyn ReadWrite>`, so a WebSocket layer could not
//! set its timeouts. Here a slow client holds no worker (the reader owns
//! a connection until its request has arrived, within a deadline), complete
//! requests wait in a bounded queue for one of a fixed number of workers,
//! every read and write has a deadline, the request head is parsed by
//! `httparse` within size limits, and upgrade handlers get the `TcpStream`
//! itself.
//!
//! Floods: `/health` and `/metrics` must keep answering while idle or slow
//! connections pile up (every attacker on loopback is 127.0.0.1, so
//! per-address caps would not help). So: the listen backlog is widened
//! (std asks for 128); the accept thread waits for the reader rather than
//! refusing (the kernel's backlog holds connections meanwhile, without a
//! file descriptor); when the reader's pending list is full, the oldest
//! connection that has not sent a whole request is evicted to make room
//! for the new one; a complete request that finds the workers busy waits
//! in the reader until its deadline instead of being refused; and complete
//! `GET /health` and `GET /metrics` requests have a queue of their own,
//! with a worker reserved for it, so slow handlers (an `/api/runs` waiting
//! for the drain thread, WebSocket upgrades) cannot hold them up. What the
//! limits cost is counted in `http_connections_shed_total{reason}`.

pub(crate) mod fds;
pub(crate) mod host;
pub(crate) mod http;
mod reader;
pub(crate) mod router;
pub(crate) mod shed;

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, select_biased};

use fds::{BACKLOG, Capacity};
use http::{Limits, Response};
use reader::{Intake, Job, Queues};
use router::{Dispatch, Refused, Router};
use shed::ShedCounts;

/// Worker threads serving requests (plus one reserved for `/health` and `/metrics`).
pub(crate) const DEFAULT_WORKERS: usize = 4;
/// The listen backlog (std's `TcpListener::bind` asks for 128; Linux caps
/// the request at `net.core.somaxconn`, 4096 by default since 5.4). A burst
/// of connections beyond the backlog sees its SYNs dropped and retried a
/// second later: with 1024, a health probe that came during a flood of
/// 2,000 connections waited that second. The kernel holds a waiting
/// connection without a file descriptor, so asking for as many as Linux
/// allows by default costs the process nothing.
const LISTEN_BACKLOG: i32 = 4096;
/// How long the accept thread pauses after an error such as EMFILE.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// A running server. Stops on [`Server::stop`] or drop.
pub(crate) struct Server {
    local_addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    intake: Sender<Intake>,
    accept: Option<JoinHandle<()>>,
    reader: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `addr` and starts the accept thread, the reader thread,
    /// `workers` workers and the worker reserved for `/health` and
    /// `/metrics`, holding at most `capacity` connections (its
    /// `ws_clients` is the WebSocket layer's); `shed` counts what the
    /// flood limits refuse.
    pub(crate) fn start(
        addr: impl ToSocketAddrs,
        mut router: Router,
        limits: Limits,
        workers: usize,
        capacity: Capacity,
        shed: Arc<ShedCounts>,
    ) -> std::io::Result<Server> {
        let listener = bind(addr)?;
        let local_addr = listener.local_addr()?;
        router.bound_to(local_addr.ip());
        let stopping = Arc::new(AtomicBool::new(false));
        let router = Arc::new(router);
        let (intake_tx, intake_rx) = crossbeam_channel::bounded::<Intake>(capacity.intake);
        let mut server = Server {
            local_addr,
            stopping: stopping.clone(),
            intake: intake_tx.clone(),
            accept: None,
            reader: None,
            workers: Vec::with_capacity(workers + 1),
        };
        // Declared after `server`, so dropped before it when a spawn below
        // fails: the workers it joins see their queues closed and stop.
        let (job_tx, job_rx) = crossbeam_channel::bounded::<Job>(BACKLOG);
        let (priority_tx, priority_rx) = crossbeam_channel::bounded::<Job>(BACKLOG);
        for i in 0..workers.max(1) {
            let (priority, jobs) = (priority_rx.clone(), job_rx.clone());
            let out = Outlet {
                router: router.clone(),
                limits,
                linger: intake_tx.clone(),
                shed: shed.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("agentgate-obs-http-{i}"))
                .spawn(move || worker(&priority, &jobs, &out))?;
            server.workers.push(thread);
        }
        // The reserved worker: only `/health` and `/metrics`.
        let out = Outlet {
            router: router.clone(),
            limits,
            linger: intake_tx.clone(),
            shed: shed.clone(),
        };
        let reserved = std::thread::Builder::new()
            .name("agentgate-obs-http-probe".into())
            .spawn(move || {
                for job in priority_rx.iter() {
                    serve_isolated(job, &out);
                }
            })?;
        server.workers.push(reserved);
        drop(job_rx);
        let queues = Queues {
            priority: priority_tx,
            general: job_tx,
        };
        let (reader_router, reader_shed) = (router.clone(), shed.clone());
        // On an error below, dropping `server` stops what was started.
        server.reader = Some(
            std::thread::Builder::new()
                .name("agentgate-obs-http-read".into())
                .spawn(move || {
                    reader::run(
                        &intake_rx,
                        &queues,
                        &reader_router,
                        &limits,
                        capacity,
                        &reader_shed,
                    )
                })?,
        );
        server.accept = Some(
            std::thread::Builder::new()
                .name("agentgate-obs-accept".into())
                .spawn(move || {
                    accept_loop(&listener, &stopping, |(stream, _)| {
                        // Waits while the reader's intake is full: the kernel's
                        // backlog holds new connections meanwhile. Fails only
                        // once the reader is gone.
                        intake_tx.send(Intake::New(stream)).is_ok()
                    })
                })?,
        );
        Ok(server)
    }

    /// The bound address (with the real port when 0 was asked for).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, drops the requests still arriving, lets the
    /// workers finish the requests they have, and joins every thread.
    /// Idempotent.
    pub(crate) fn stop(&mut self) {
        if let Some(accept) = self.accept.take() {
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
            let _ = accept.join();
        }
        if let Some(reader) = self.reader.take() {
            // The reader empties its intake every pass, so this send waits briefly at most.
            let _ = self.intake.send(Intake::Stop);
            // The reader's exit drops the job sender: the workers finish what
            // is queued, then their loops end.
            let _ = reader.join();
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(
    listener: &TcpListener,
    stopping: &AtomicBool,
    mut hand_off: impl FnMut((TcpStream, SocketAddr)) -> bool,
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

/// Binds the first address of `addr` that works, as `TcpListener::bind`
/// does, but with a listen backlog of [`LISTEN_BACKLOG`]: std always asks
/// for 128 and offers no way to choose (socket2 does, without our own
/// `unsafe`).
fn bind(addr: impl ToSocketAddrs) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let mut last_error = None;
    for addr in addr.to_socket_addrs()? {
        let attempt = (|| {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
            // As std does on Unix: a restarted engine can bind its port
            // again while old connections sit in TIME_WAIT.
            #[cfg(unix)]
            socket.set_reuse_address(true)?;
            socket.bind(&addr.into())?;
            socket.listen(LISTEN_BACKLOG)?;
            Ok::<_, std::io::Error>(TcpListener::from(socket))
        })();
        match attempt {
            Ok(listener) => return Ok(listener),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    }))
}

/// What a worker needs besides its jobs.
struct Outlet {
    router: Arc<Router>,
    limits: Limits,
    /// The reader's intake, which takes answered connections to linger.
    linger: Sender<Intake>,
    shed: Arc<ShedCounts>,
}

/// A general worker: `/health` and `/metrics` first, then everything else.
fn worker(priority: &Receiver<Job>, jobs: &Receiver<Job>, out: &Outlet) {
    loop {
        // Both senders belong to the reader and go together: once one
        // channel is closed and empty, finish the other and stop.
        select_biased! {
            recv(priority) -> job => match job {
                Ok(job) => serve_isolated(job, out),
                Err(_) => break jobs.iter().for_each(|j| serve_isolated(j, out)),
            },
            recv(jobs) -> job => match job {
                Ok(job) => serve_isolated(job, out),
                Err(_) => break priority.iter().for_each(|j| serve_isolated(j, out)),
            },
        }
    }
}

/// A panicking handler costs its connection, never the worker.
fn serve_isolated(job: Job, out: &Outlet) {
    let _ = catch_unwind(AssertUnwindSafe(|| serve(job, out)));
}

fn serve(job: Job, out: &Outlet) {
    let Job {
        stream,
        request,
        leftover,
    } = job;
    if stream
        .set_write_timeout(Some(out.limits.write_timeout))
        .is_err()
    {
        return;
    }
    let head_only = request.method == "HEAD";
    let response = match out.router.dispatch(&request) {
        Dispatch::Upgrade(upgrade) => {
            let _ = stream.set_read_timeout(None);
            match upgrade(request, stream, leftover) {
                Ok(()) => return,
                // Answered here like any response: the worker writes a few
                // hundred bytes and moves on, and the reader (not the
                // worker) reads away what the client sends after it.
                Err(Refused {
                    stream,
                    leftover,
                    response,
                    shed,
                }) => {
                    if let Some(reason) = shed {
                        out.shed.count(reason);
                    }
                    return answer(stream, &leftover, &response, false, &out.linger);
                }
            }
        }
        Dispatch::Respond(response) => response,
    };
    answer(stream, &leftover, &response, head_only, &out.linger);
}

/// Writes `response`, shuts the write side and closes: at once when the
/// client sent nothing more, else through the reader's lingering list.
fn answer(
    mut stream: TcpStream,
    leftover: &[u8],
    response: &Response,
    head_only: bool,
    linger: &Sender<Intake>,
) {
    let _ = response.write_to(&mut stream, head_only);
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
    if leftover.is_empty() && !reader::more_is_buffered(&stream) {
        // Nothing unread, so closing sends FIN, not a reset that could
        // destroy the answer: close now. Lingering every connection cost
        // a tight scrape loop a reader wake-up per scrape. The one case
        // this gives up: a client that pipelines a request in a later
        // write despite our `Connection: close` may see a reset.
        return;
    }
    // The client sent more than its request (pipelining, an unread body,
    // the first frames after a refused upgrade): the reader reads it away,
    // then closes; if its intake is full or gone, closing at once is the
    // fallback.
    let _ = linger.try_send(Intake::Linger(stream));
}

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
//! requests wait in a bounded queue for one of a fixed number of workers (a
//! full queue is answered 503 at once), every read and write has a deadline, the request head is parsed by `httparse`
//! within size limits, and upgrade handlers get the `TcpStream` itself.

pub(crate) mod host;
pub(crate) mod http;
mod reader;
pub(crate) mod router;
pub(crate) mod routes;

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use http::{Limits, Response};
use reader::{Intake, Job};
use router::{Dispatch, Router};

/// Worker threads serving requests.
pub(crate) const DEFAULT_WORKERS: usize = 4;
/// Complete requests waiting for a worker before new ones get a 503.
const BACKLOG: usize = 64;
/// Accepted and answered connections waiting for the reader thread.
const INTAKE: usize = 256;
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
    /// Binds `addr` and starts the accept thread, the reader thread and
    /// `workers` workers.
    pub(crate) fn start(
        addr: impl ToSocketAddrs,
        mut router: Router,
        limits: Limits,
        workers: usize,
    ) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        router.bound_to(local_addr.ip());
        let stopping = Arc::new(AtomicBool::new(false));
        let router = Arc::new(router);
        let (intake_tx, intake_rx) = crossbeam_channel::bounded::<Intake>(INTAKE);
        let (job_tx, job_rx) = crossbeam_channel::bounded::<Job>(BACKLOG);
        let mut server = Server {
            local_addr,
            stopping: stopping.clone(),
            intake: intake_tx.clone(),
            accept: None,
            reader: None,
            workers: Vec::with_capacity(workers),
        };
        for i in 0..workers.max(1) {
            let (jobs, router, linger) = (job_rx.clone(), router.clone(), intake_tx.clone());
            let thread = std::thread::Builder::new()
                .name(format!("agentgate-obs-http-{i}"))
                .spawn(move || worker(&jobs, &router, &limits, &linger))?;
            server.workers.push(thread);
        }
        drop(job_rx);
        // On an error below, dropping `server` stops what was started.
        server.reader = Some(
            std::thread::Builder::new()
                .name("agentgate-obs-http-read".into())
                .spawn(move || reader::run(&intake_rx, &job_tx, &limits))?,
        );
        server.accept = Some(
            std::thread::Builder::new()
                .name("agentgate-obs-accept".into())
                .spawn(move || {
                    accept_loop(&listener, &stopping, |(stream, peer)| {
                        match intake_tx.try_send(Intake::New(stream, peer)) {
                            Ok(()) => true,
                            Err(TrySendError::Full(Intake::New(stream, _))) => {
                                busy(stream);
                                true
                            }
                            Err(_) => false,
                        }
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

/// Answers 503 when the reader's intake is full.
fn busy(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = Response::error(503, "the server is busy; retry shortly")
        .with_header("Retry-After", "1")
        .write_to(&mut stream, false);
}

fn worker(jobs: &Receiver<Job>, router: &Router, limits: &Limits, linger: &Sender<Intake>) {
    for job in jobs.iter() {
        // A panicking handler costs its connection, never the worker.
        let _ = catch_unwind(AssertUnwindSafe(|| serve(job, router, limits, linger)));
    }
}

fn serve(job: Job, router: &Router, limits: &Limits, linger: &Sender<Intake>) {
    let Job {
        mut stream,
        request,
        leftover,
    } = job;
    if stream
        .set_write_timeout(Some(limits.write_timeout))
        .is_err()
    {
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
    let _ = stream.shutdown(Shutdown::Write);
    if leftover.is_empty() && !more_is_buffered(&stream) {
        // Nothing unread, so closing sends FIN, not a reset that could
        // destroy the answer: close now. Lingering every connection cost
        // a tight scrape loop a reader wake-up per scrape. The one case
        // this gives up: a client that pipelines a request in a later
        // write despite our `Connection: close` may see a reset.
        return;
    }
    // The client sent more than its request (pipelining, an unread body):
    // the reader reads it away, then closes; if its intake is full or
    // gone, closing at once is the fallback.
    let _ = linger.try_send(Intake::Linger(stream));
}

/// Whether the client has sent bytes we have not read (like nginx, we only
/// linger on close when more input is there).
fn more_is_buffered(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut byte = [0u8; 1];
    // Ok(0) is the client's FIN: nothing more is coming.
    matches!(stream.peek(&mut byte), Ok(n) if n > 0)
}

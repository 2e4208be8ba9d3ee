//! The process-wide emitter, like `log`'s logger: installed once by the
//! application ([`Observability::install_global`]), reached from anywhere
//! with [`global()`], so a library deep in the engine can emit without an
//! [`Emitter`] threaded through every call.

use std::sync::{LazyLock, OnceLock};

use crate::emitter::Emitter;
use crate::error::Error;
use crate::observability::Observability;
use crate::pipeline::{Overflow, Shared};

/// The installed emitter; set at most once.
static GLOBAL: OnceLock<Emitter> = OnceLock::new();

/// What [`global()`] returns before anything is installed: an emitter on
/// a pipeline that was closed before it started (no drain thread, no
/// thread, a ring of one slot that is never used).
static NO_OP: LazyLock<Emitter> = LazyLock::new(|| {
    let (shared, _rx) = Shared::new(1, Overflow::DropNewest);
    shared.close();
    Emitter::new(shared)
});

/// The process-wide emitter: the one [`Observability::install_global`]
/// installed, else a no-op emitter.
///
/// Before installation every call works and goes nowhere: the events are
/// counted only in the no-op pipeline's own counters, which nothing reads;
/// they are not replayed once an emitter is installed. Such an emit costs
/// the clock read and the thread-local bookkeeping of an ordinary emit and
/// stops there (no ring, no drain thread). [`start_run`](Emitter::start_run)
/// and [`run`](Emitter::run) work too, so code written against `global()`
/// runs unchanged in tests that install nothing.
///
/// The handle is `&'static`: calling `global()` on every emit costs one
/// atomic load and touches no reference count.
///
/// ```
/// use agentgate_obs::{Phase, global};
/// // Deep in a library: no emitter passed in.
/// let run = global().run("wo-1", "run-1");
/// run.phase_started(1, Phase::Build);
/// ```
pub fn global() -> &'static Emitter {
    match GLOBAL.get() {
        Some(emitter) => emitter,
        None => &NO_OP,
    }
}

impl Observability {
    /// Makes this pipeline's emitter the one [`global()`] returns, for the
    /// rest of the process. Once per process: a second call, on this
    /// pipeline or another, is [`Error::GlobalAlreadyInstalled`] and
    /// changes nothing.
    ///
    /// The global holds an [`Emitter`] clone, which keeps the pipeline's
    /// shared state (not its threads) alive: after this `Observability`
    /// shuts down, global emits are counted as dropped in its
    /// [`stats`](Observability::stats), as for any emitter.
    ///
    /// ```no_run
    /// use agentgate_obs::{Observability, global};
    /// let obs = Observability::builder().serve("127.0.0.1:9464").start()?;
    /// obs.install_global()?;
    /// assert!(obs.install_global().is_err());
    /// let _run = global().run("wo-1", "run-1");
    /// # Ok::<(), agentgate_obs::Error>(())
    /// ```
    pub fn install_global(&self) -> Result<(), Error> {
        GLOBAL
            .set(self.emitter())
            .map_err(|_| Error::GlobalAlreadyInstalled)
    }
}

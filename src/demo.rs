//! A simulated synchronous engine, for `agentgate-obs demo`, the soak test
//! and anyone who wants realistic traffic.
//!
//! Worker threads take work orders from a queue; each run goes through
//! iterations of build → snapshot → verify (gates) → feedback (after a
//! failed verify), with seeded build failures, gate failures, retries with
//! feedback, cancellations, engine errors, timeouts and deliveries that
//! sometimes fail. Every work order draws from its own generator seeded by
//! `seed` and its index, so a seed gives the same runs whatever the thread
//! scheduling. Durations are drawn realistic (seconds to minutes), then
//! multiplied by `time_scale`: the engine sleeps for the scaled duration and
//! events report exactly that, so every duration on the dashboard agrees
//! with its clock (a run's `durationMs` never exceeds the time between its
//! `run_started` and `run_completed`). With `time_scale` 0 nothing sleeps
//! and events report the unscaled durations, so the figures still look
//! like an engine's.
//!
//! ```
//! use agentgate_obs::Observability;
//! use agentgate_obs::demo::{DemoConfig, run_engine};
//! use std::sync::atomic::AtomicBool;
//!
//! let obs = Observability::builder().start().unwrap();
//! let config = DemoConfig { work_orders: 5, concurrency: 2, seed: 7, time_scale: 0.0 };
//! let outcome = run_engine(&obs.emitter(), &config, &AtomicBool::new(false));
//! obs.flush();
//! assert_eq!(outcome.total(), 5);
//! assert_eq!(obs.active_runs(), 0);
//! ```

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::context::{LogContext, with_context};
use crate::emitter::{Emitter, RunHandle};
use crate::event::{
    DeliveryResult, ExecutionMetrics, Phase, PhaseTimings, RunOutcome, RunResult, Strategy,
    TaskSpec,
};
use crate::log::Logger;

/// How much traffic to make.
#[derive(Clone, Debug, PartialEq)]
pub struct DemoConfig {
    /// Work orders to run, one run each.
    pub work_orders: usize,
    /// Worker threads.
    pub concurrency: usize,
    /// Seed of the whole simulation.
    pub seed: u64,
    /// Factor applied to simulated durations; the engine sleeps for the
    /// result and reports it (0: no sleep, unscaled durations reported).
    pub time_scale: f64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            work_orders: 40,
            concurrency: 4,
            seed: 42,
            time_scale: 0.05,
        }
    }
}

/// How the simulated runs ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RunTally {
    /// Runs that completed with `passed`.
    pub succeeded: u64,
    /// Runs that failed (`failed_*` or `run_failed`).
    pub failed: u64,
    /// Runs that were canceled.
    pub canceled: u64,
}

impl RunTally {
    /// All runs.
    pub fn total(&self) -> u64 {
        self.succeeded + self.failed + self.canceled
    }

    fn add(&mut self, outcome: RunOutcome) {
        match outcome {
            RunOutcome::Succeeded => self.succeeded += 1,
            RunOutcome::Failed => self.failed += 1,
            RunOutcome::Canceled => self.canceled += 1,
        }
    }

    fn merge(&mut self, other: RunTally) {
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.canceled += other.canceled;
    }
}

/// Runs the simulated engine to completion (or until `stop` is set) on
/// `config.concurrency` threads, emitting through `emitter`. Returns how
/// the runs ended, as the engine saw it.
pub fn run_engine(emitter: &Emitter, config: &DemoConfig, stop: &AtomicBool) -> RunTally {
    let next = AtomicUsize::new(0);
    let workers = config.concurrency.clamp(1, 256);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut tally = RunTally::default();
                    loop {
                        // Relaxed: a ticket counter; each index is taken once.
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        // Relaxed: a request to stop soon, not a synchronization point.
                        if index >= config.work_orders || stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let mut sim = Simulation::new(config, index, stop);
                        tally.add(sim.run(emitter));
                    }
                    tally
                })
            })
            .collect();
        let mut total = RunTally::default();
        for handle in handles {
            // A worker only panics if the emitter does, which it does not.
            if let Ok(tally) = handle.join() {
                total.merge(tally);
            }
        }
        total
    })
}

const GOALS: &[&str] = &[
    "Fix the flaky retry test in the payment client",
    "Add pagination to the /v2/orders endpoint and document it in the OpenAPI spec",
    "Upgrade the logging library and remove deprecated call sites",
    "Make the CSV importer tolerate quoted newlines",
    "Port the nightly report job from cron to the scheduler service",
    "Reduce cold-start time of the search indexer below two seconds",
    "Add a dark mode toggle to the settings page",
    "Replace hand-rolled JSON parsing in the webhook handler with serde",
    "Write integration tests for the rate limiter under clock skew",
    "Remove the N+1 query from the dashboard's project list",
];
const REPOS: &[&str] = &["payments", "orders-api", "indexer", "webapp", "scheduler"];
const GATES: &[(&str, f64)] = &[
    ("lint", 0.93),
    ("typecheck", 0.88),
    ("unit-tests", 0.78),
    ("integration", 0.85),
    ("coverage", 0.9),
];

/// One work order's run.
struct Simulation<'a> {
    /// The engine's own log lines, through the global writer.
    log: Logger,
    rng: fastrand::Rng,
    index: usize,
    time_scale: f64,
    stop: &'a AtomicBool,
}

/// Simulated time spent by one run.
#[derive(Default)]
struct RunClock {
    iteration: PhaseTimings,
    totals: PhaseTimings,
    elapsed: Duration,
}

impl RunClock {
    fn record(&mut self, phase: Phase, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.iteration.set(phase, Some(ms));
        self.totals.add(phase, ms);
        self.elapsed += d;
    }
}

/// How a run is going to end early, drawn up front.
enum Fate {
    Normal,
    CanceledIn(u32),
    ErrorIn(u32),
    TimeoutIn(u32),
}

impl<'a> Simulation<'a> {
    fn new(config: &DemoConfig, index: usize, stop: &'a AtomicBool) -> Self {
        // SplitMix-style mixing so neighbouring indices get unrelated streams.
        let seed = config
            .seed
            .wrapping_add((index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        Simulation {
            log: Logger::new("agentgate_obs::demo::engine"),
            rng: fastrand::Rng::with_seed(seed),
            index,
            time_scale: config.time_scale.max(0.0),
            stop,
        }
    }

    /// A duration around `median_ms`, spread log-normally-ish.
    fn duration(&mut self, median_ms: f64) -> Duration {
        let spread = 0.5 + self.rng.f64() * 1.5;
        let tail = if self.rng.f64() < 0.05 { 3.0 } else { 1.0 };
        Duration::from_secs_f64(median_ms * spread * tail / 1000.0)
    }

    /// Spends `d` of simulated time; returns the duration to report: what
    /// was slept (`d` scaled), or `d` itself when the demo does not sleep.
    fn pass(&self, d: Duration) -> Duration {
        if self.time_scale == 0.0 {
            return d;
        }
        let scaled = d.mul_f64(self.time_scale);
        // Relaxed: see `run_engine`.
        if !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(scaled);
        }
        scaled
    }

    fn run(&mut self, emitter: &Emitter) -> RunOutcome {
        let work_order_id = format!("wo-{:04}", self.index + 1);
        let run_id = format!(
            "run-{:04}-{:06x}",
            self.index + 1,
            self.rng.u32(..) & 0xFF_FFFF
        );
        let ctx = LogContext::new()
            .work_order_id(&work_order_id)
            .run_id(&run_id)
            .correlation_id(format!("req-{:08x}", self.rng.u32(..)));
        let run = emitter.run(&work_order_id, &run_id);
        with_context(ctx, || self.drive(&run))
    }

    fn drive(&mut self, run: &RunHandle) -> RunOutcome {
        let strategy = Strategy::ALL[self.rng.usize(..Strategy::ALL.len())];
        let max_iterations = self.rng.u32(2..=5);
        let goal = GOALS[self.rng.usize(..GOALS.len())];
        run.started(&TaskSpec::new(goal, strategy, max_iterations));
        self.log.info(
            "Run picked up",
            [
                ("strategy", strategy.as_str().into()),
                ("maxIterations", max_iterations.into()),
                ("goal", goal.into()),
            ],
        );

        let roll = self.rng.f64();
        let fate = match roll {
            r if r < 0.06 => Fate::CanceledIn(self.rng.u32(1..=max_iterations)),
            r if r < 0.10 => Fate::ErrorIn(self.rng.u32(1..=max_iterations)),
            r if r < 0.13 => Fate::TimeoutIn(max_iterations),
            _ => Fate::Normal,
        };

        let mut clock = RunClock::default();
        let mut feedback: Option<String> = None;
        for iteration in 1..=max_iterations {
            let _iteration_ctx = LogContext::new().iteration(iteration).enter();
            run.iteration_started(iteration, max_iterations, feedback.as_deref());
            clock.iteration = PhaseTimings::default();

            match fate {
                Fate::CanceledIn(i) if i == iteration => {
                    self.phase(run, &mut clock, iteration, Phase::Build, 9_000.0, true);
                    run.canceled("canceled by user from the dashboard");
                    self.log.warn("Run canceled", [("reason", "user".into())]);
                    return RunOutcome::Canceled;
                }
                Fate::ErrorIn(i) if i == iteration => {
                    self.phase(run, &mut clock, iteration, Phase::Build, 6_000.0, false);
                    run.failed("agent process exited with code 137 (out of memory)");
                    self.log
                        .error("Agent process died", [("exitCode", 137u32.into())]);
                    return RunOutcome::Failed;
                }
                _ => {}
            }

            let build_ok = self.rng.f64() > 0.07;
            self.phase(run, &mut clock, iteration, Phase::Build, 12_000.0, build_ok);
            if !build_ok {
                run.iteration_completed(iteration, false, &clock.iteration);
                if iteration == max_iterations {
                    return self.finish(run, RunResult::FailedBuild, iteration, &clock);
                }
                let text = "build failed: cannot find symbol `RetryPolicy` in module `client`";
                self.log.warn("Build failed", [("feedback", text.into())]);
                feedback = Some(text.into());
                continue;
            }
            self.phase(run, &mut clock, iteration, Phase::Snapshot, 1_200.0, true);

            // Later iterations learn from feedback.
            let learning = 1.0 + 0.12 * f64::from(iteration - 1);
            run.phase_started(iteration, Phase::Verify);
            let mut verify = Duration::ZERO;
            let mut failed_gate = None;
            for (gate, pass_rate) in GATES {
                let d = self.duration(4_000.0);
                let d = self.pass(d);
                verify += d;
                let passed = self.rng.f64() < (pass_rate * learning).min(0.99);
                run.gate_checked_timed(iteration, gate, passed, d);
                self.log.debug(
                    "Gate checked",
                    [("gate", (*gate).into()), ("passed", passed.into())],
                );
                if !passed && failed_gate.is_none() {
                    failed_gate = Some(*gate);
                }
            }
            let verified = failed_gate.is_none();
            run.phase_completed(iteration, Phase::Verify, verified, verify);
            clock.record(Phase::Verify, verify);

            if let Fate::TimeoutIn(i) = fate
                && i == iteration
            {
                run.iteration_completed(iteration, false, &clock.iteration);
                return self.finish(run, RunResult::FailedTimeout, iteration, &clock);
            }
            if verified {
                run.iteration_completed(iteration, true, &clock.iteration);
                self.deliver(run);
                return self.finish(run, RunResult::Passed, iteration, &clock);
            }
            self.phase(run, &mut clock, iteration, Phase::Feedback, 2_500.0, true);
            run.iteration_completed(iteration, false, &clock.iteration);
            feedback =
                failed_gate.map(|gate| format!("gate `{gate}` failed: 3 assertions in 2 files"));
        }
        self.finish(run, RunResult::FailedVerification, max_iterations, &clock)
    }

    /// Runs one phase of `median_ms` (simulated).
    fn phase(
        &mut self,
        run: &RunHandle,
        clock: &mut RunClock,
        iteration: u32,
        phase: Phase,
        median_ms: f64,
        success: bool,
    ) {
        run.phase_started(iteration, phase);
        let d = self.duration(median_ms);
        let d = self.pass(d);
        run.phase_completed(iteration, phase, success, d);
        clock.record(phase, d);
    }

    fn deliver(&mut self, run: &RunHandle) {
        run.delivery_started();
        let d = self.duration(3_000.0);
        // Delivery time is part of the run's wall time, not of a phase.
        let _ = self.pass(d);
        let success = self.rng.f64() > 0.1;
        let repo = REPOS[self.rng.usize(..REPOS.len())];
        // The engine's credentials reach the log only as [REDACTED].
        ::log::info!("pushing branch to {repo} with token ghp_{}", "x".repeat(36));
        self.log.info(
            "Opening pull request",
            [
                ("repo", repo.into()),
                ("authorization", "Bearer not-a-real-secret".into()),
            ],
        );
        let result = if success {
            DeliveryResult {
                success,
                pr_url: Some(format!(
                    "https://github.com/acme/{repo}/pull/{}",
                    100 + self.index
                )),
                ci_status: Some(
                    if self.rng.bool() {
                        "success"
                    } else {
                        "pending"
                    }
                    .into(),
                ),
            }
        } else {
            DeliveryResult {
                success,
                pr_url: None,
                ci_status: Some("error".into()),
            }
        };
        run.delivery_completed(&result);
    }

    fn finish(
        &mut self,
        run: &RunHandle,
        result: RunResult,
        iterations: u32,
        clock: &RunClock,
    ) -> RunOutcome {
        let metrics = ExecutionMetrics {
            total_duration_ms: u64::try_from(clock.elapsed.as_millis()).unwrap_or(u64::MAX),
            iteration_count: iterations,
            phase_breakdown: clock.totals,
            agent_metrics: Some(serde_json::json!({
                "tokensIn": self.rng.u32(20_000..400_000),
                "tokensOut": self.rng.u32(2_000..40_000),
            })),
        };
        run.completed(result, &metrics);
        let outcome = RunOutcome::from(result);
        let level = match outcome {
            RunOutcome::Succeeded => crate::log::Level::Info,
            _ => crate::log::Level::Warn,
        };
        self.log.log(
            level,
            "Run finished",
            [
                ("result", result.as_str().into()),
                ("iterations", iterations.into()),
            ],
        );
        outcome
    }
}

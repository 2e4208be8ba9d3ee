//! A small synchronous engine whose phases run real commands, instrumented
//! with the scoped guards, the global facade and one metric of its own.
//!
//! ```text
//! cargo run --example engine -- --phase build='cargo check' \
//!     --phase test='sh -c "exit 0"' --work-orders 3
//! ```
//!
//! `--phase NAME=COMMAND` runs COMMAND with `sh -c` in phase NAME (`build`,
//! `snapshot`, `verify`, `feedback`); any other NAME is a gate checked in
//! `verify`. The first failure ends the run (`feedback` runs only after a
//! failed `verify`). Exits 1 when a run failed.

use std::process::{Command, ExitCode};
use std::time::Instant;

use agentgate_obs::metrics::HistogramVec;
use agentgate_obs::{
    Emitter, ExecutionMetrics, Metadata, Observability, Phase, ProgressEmitter, RunResult,
    Strategy, TaskSpec, global,
};
use clap::Parser;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// A step, NAME=COMMAND; repeat for several.
    #[arg(long = "phase", value_name = "NAME=COMMAND", value_parser = parse_step, required = true)]
    steps: Vec<Step>,
    /// Work orders to run, one after the other.
    #[arg(long, default_value_t = 1)]
    work_orders: u32,
    /// Where to serve the dashboard, /metrics, /api/* and /ws.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: String,
    /// Exit once the work orders are done instead of serving until Ctrl-C.
    #[arg(long)]
    exit_when_done: bool,
}

#[derive(Clone)]
struct Step {
    name: String,
    command: String,
    phase: Phase,
    /// A gate, checked in `verify`: its name is no phase's.
    gate: bool,
}

fn parse_step(arg: &str) -> Result<Step, String> {
    let (name, command) = arg.split_once('=').ok_or("expected NAME=COMMAND")?;
    let phase: Option<Phase> = name.trim().parse().ok();
    Ok(Step {
        name: name.trim().to_owned(),
        command: command.to_owned(),
        phase: phase.unwrap_or(Phase::Verify),
        gate: phase.is_none(),
    })
}

/// Runs every work order; exits 1 when a run failed.
fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let args = Args::parse();
    let obs = Observability::builder().serve(&args.listen).start()?;
    obs.install_global()?;
    let addr = obs.local_addr().ok_or("the server did not bind")?;
    println!("dashboard: http://{addr}/");
    let engine = Engine {
        steps: args.steps,
        commands: obs.metrics().histogram_vec(
            "engine_command_duration_seconds",
            "Commands the engine ran, by phase.",
            &["phase"],
        )?,
    };
    let passed = (1..=args.work_orders)
        .filter(|n| engine.execute(&obs.emitter(), &format!("wo-{n}"), &format!("run-{n}")))
        .count();
    obs.flush();
    println!("done: {} runs, {passed} passed", args.work_orders);
    if !args.exit_when_done {
        let (tx, ctrl_c) = std::sync::mpsc::channel();
        ctrlc::set_handler(move || _ = tx.send(()))?;
        let _ = ctrl_c.recv();
    }
    obs.shutdown();
    Ok(ExitCode::from(u8::from(passed < args.work_orders as usize)))
}

/// What the engine knows, and its own metric, on the same `/metrics`.
struct Engine {
    steps: Vec<Step>,
    commands: HistogramVec,
}

impl Engine {
    /// One work order: a single iteration of the phases that have steps.
    fn execute(&self, emitter: &Emitter, work_order: &str, run_id: &str) -> bool {
        let names: Vec<&str> = self.steps.iter().map(|s| s.name.as_str()).collect();
        let spec = TaskSpec::new(names.join(", "), Strategy::Fixed, 1);
        let mut run = emitter.start_run(work_order, run_id, &spec);
        let mut iteration = run.iteration(1, 1, None);
        let mut failed = None;
        for &phase in Phase::ALL {
            let wanted = match failed {
                None => phase != Phase::Feedback,
                Some(f) => f == Phase::Verify && phase == Phase::Feedback,
            };
            let steps: Vec<&Step> = self.steps.iter().filter(|s| s.phase == phase).collect();
            if !wanted || steps.is_empty() {
                continue;
            }
            let guard = iteration.phase(phase);
            let mut metadata = Metadata::new();
            // Stops at the first failing command or gate.
            let ok = steps.iter().all(|step| match step.gate {
                false => self.run_command(phase, step, &mut metadata),
                true => self.check_gate(work_order, run_id, step, &mut metadata),
            });
            guard.with_metadata(metadata).finish(ok);
            failed = failed.or((!ok).then_some(phase));
        }
        iteration.finish(failed.is_none());
        let result = match failed {
            None => RunResult::Passed,
            Some(Phase::Build) => RunResult::FailedBuild,
            Some(Phase::Verify) => RunResult::FailedVerification,
            Some(_) => RunResult::FailedError,
        };
        run.finish(result, &ExecutionMetrics::default());
        failed.is_none()
    }

    /// Deep in the engine, with no emitter passed in: the global facade.
    fn check_gate(&self, work_order: &str, run_id: &str, gate: &Step, meta: &mut Metadata) -> bool {
        let started = Instant::now();
        let passed = self.run_command(Phase::Verify, gate, meta);
        let took = started.elapsed();
        global().emit_gate_checked_timed(work_order, run_id, 1, &gate.name, passed, took);
        passed
    }

    /// The one place a command runs; notes its exit code and output sizes.
    fn run_command(&self, phase: Phase, step: &Step, metadata: &mut Metadata) -> bool {
        let started = Instant::now();
        let fields = match Command::new("sh").arg("-c").arg(&step.command).output() {
            Ok(out) => json!({"command": step.command, "exitCode": out.status.code(),
                "stdoutBytes": out.stdout.len(), "stderrBytes": out.stderr.len()}),
            Err(e) => json!({"command": step.command, "error": e.to_string()}),
        };
        if let Ok(seconds) = self.commands.with(&[phase.as_str()]) {
            seconds.record_duration(started.elapsed());
        }
        let ok = fields["exitCode"] == 0;
        metadata.insert(step.name.clone(), fields);
        ok
    }
}

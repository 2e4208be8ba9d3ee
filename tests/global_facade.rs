//! The process-wide emitter. The global is set once per process, so the
//! whole story is one test, in sections, in its own test binary.

mod common;

use agentgate_obs::{Error, ExecutionMetrics, Phase, ProgressEmitter, Strategy, TaskSpec, global};
use common::{Recorder, quiet};

#[test]
fn the_global_emitter_is_a_no_op_until_installed_then_the_installed_pipeline_once_and_for_all() {
    let spec = TaskSpec::new("fix it", Strategy::Ralph, 3);
    let obs = quiet().start().expect("pipeline starts");
    let (recorder, _sub) = Recorder::attach(&obs.emitter());

    // Before installation: every call works, nothing arrives anywhere.
    global().emit_run_started("wo-0", "run-0", &spec);
    global().run("wo-0", "run-0").phase_started(1, Phase::Build);
    {
        let mut run = global().start_run("wo-0", "run-guarded", &spec);
        run.iteration(1, 3, None).phase(Phase::Build).succeed();
    }
    obs.flush();
    assert_eq!(recorder.len(), 0);
    assert_eq!(obs.stats().emitted.total(), 0);
    assert!(obs.runs().is_empty());

    // Installed: the same calls reach this pipeline.
    obs.install_global().expect("first installation");
    let mut run = global().start_run("wo-1", "run-1", &spec);
    run.iteration(1, 3, None).succeed();
    run.succeed(&ExecutionMetrics::default());
    global().emit_delivery_started("wo-1", "run-1");
    obs.flush();
    let types = recorder.types();
    assert_eq!(
        types,
        [
            "run_started",
            "iteration_started",
            "iteration_completed",
            "run_completed",
            "delivery_started"
        ]
    );
    assert_eq!(obs.runs()[0].run_id.as_ref(), "run-1");

    // A second installation, of this pipeline or another, is an error and
    // changes nothing.
    let other = quiet().start().expect("pipeline starts");
    let again = other.install_global();
    assert!(matches!(again, Err(Error::GlobalAlreadyInstalled)));
    let message = again.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("once per process"), "{message}");
    assert!(matches!(
        obs.install_global(),
        Err(Error::GlobalAlreadyInstalled)
    ));
    global().emit_run_canceled("wo-2", "run-2", "still the first pipeline");
    obs.flush();
    other.flush();
    assert_eq!(obs.runs().len(), 2);
    assert_eq!(other.stats().emitted.total(), 0);
}

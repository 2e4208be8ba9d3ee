//! Resuming with `since` is only sound against the server that numbered
//! the events: `hello` names the server's instance, and a client that
//! sends back another instance's `since` gets a fresh snapshot.

use crate::common;

use agentgate_obs::{Observability, ProgressEmitter, Strategy, TaskSpec};
use common::ws::Client;

fn server() -> Observability {
    common::quiet().serve("127.0.0.1:0").start().unwrap()
}

fn started(obs: &Observability, run: &str) {
    obs.emitter()
        .emit_run_started("wo", run, &TaskSpec::new("g", Strategy::Fixed, 1));
    obs.flush();
}

#[test]
fn hello_names_the_server_instance_and_resuming_with_it_replays_the_missed_events() {
    let obs = server();
    let addr = obs.local_addr().unwrap();
    started(&obs, "run-1");
    let mut first = Client::connect(addr, "/ws");
    let hello = first.next_json();
    let instance = hello["instance"].as_str().unwrap_or_default().to_owned();
    assert_eq!(instance.len(), 16, "{hello}");
    let seq = hello["seq"].as_u64().unwrap();
    first.close();

    started(&obs, "run-2");
    let mut back = Client::connect(addr, &format!("/ws?since={seq}&instance={instance}"));
    let hello = back.next_json();
    assert_eq!(hello["resumed"], true, "{hello}");
    assert_eq!(hello["instance"], instance.as_str());
    let event = back.next_json();
    assert_eq!(
        (event["type"].as_str(), event["runId"].as_str()),
        (Some("run:started"), Some("run-2"))
    );
    obs.shutdown();
}

#[test]
fn resuming_with_the_instance_of_another_server_gets_a_fresh_snapshot() {
    let old = server();
    let addr = old.local_addr().unwrap();
    let mut client = Client::connect(addr, "/ws");
    let old_hello = client.next_json();
    client.close();
    old.shutdown();
    drop(old);

    // The new server has numbered as many events as the client saw, so
    // `since` alone would look resumable.
    let new = server();
    for i in 0..3 {
        started(&new, &format!("run-{i}"));
    }
    let addr = new.local_addr().unwrap();
    let stale = old_hello["instance"].as_str().unwrap_or_default();
    let mut client = Client::connect(addr, &format!("/ws?since=1&instance={stale}"));
    let hello = client.next_json();
    assert_ne!(hello["instance"], old_hello["instance"]);
    assert_eq!(hello["reset"], true, "{hello}");
    assert_eq!(hello["runs"].as_array().map(Vec::len), Some(3), "{hello}");
    new.shutdown();
}

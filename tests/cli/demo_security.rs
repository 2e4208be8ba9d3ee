//! The demo's token sources (`--token-file`, `AGENTGATE_TOKEN`), that it
//! never prints the token, and that it refuses to serve beyond loopback
//! without one unless told `--allow-public`.
#![cfg(feature = "cli")]

use crate::common;

use std::process::{Command, Output, Stdio};

use common::demo::Demo;
use common::http_get;

/// Runs a short demo to completion.
fn demo_once(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agentgate-obs"))
        .arg("demo")
        .args([
            "--work-orders",
            "2",
            "--time-scale",
            "0",
            "--exit-when-done",
        ])
        .args(args)
        .env_remove("AGENTGATE_TOKEN")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("the demo runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn token_file(name: &str, contents: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("agentgate-demo-{name}-{}", std::process::id()));
    std::fs::write(&path, contents).expect("token file");
    path
}

#[test]
fn the_demo_takes_its_token_from_a_file_or_the_environment_and_never_prints_it() {
    let file = token_file("token", "  s3cret-file\n");
    let path = file.to_str().expect("UTF-8 path");
    let from_file = Demo::start(&["--token-file", path, "--work-orders", "1"]);
    let from_env = Demo::start_with_env(
        &["--work-orders", "1"],
        &[("AGENTGATE_TOKEN", "s3cret-env")],
    );
    for (demo, token) in [(&from_file, "s3cret-file"), (&from_env, "s3cret-env")] {
        assert!(!demo.dashboard.contains("token"), "{}", demo.dashboard);
        assert_eq!(http_get(demo.addr, "/api/runs", &[]).status, 401);
        let bearer = format!("Authorization: Bearer {token}");
        assert_eq!(http_get(demo.addr, "/api/runs", &[&bearer]).status, 200);
    }

    // Everything it prints, start to end, with each source.
    for (args, env) in [
        (
            vec!["--listen", "127.0.0.1:0", "--token", "s3cret-flag"],
            vec![],
        ),
        (
            vec!["--listen", "127.0.0.1:0", "--token-file", path],
            vec![],
        ),
        (
            vec!["--listen", "127.0.0.1:0"],
            vec![("AGENTGATE_TOKEN", "s3cret-env")],
        ),
    ] {
        let out = demo_once(&args, &env);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(stdout.contains("dashboard: http://127.0.0.1:"), "{stdout}");
        assert!(stdout.contains("needs the token"), "{stdout}");
        assert!(
            !stdout.contains("s3cret") && !stderr.contains("s3cret"),
            "{args:?}: {stdout}{stderr}"
        );
    }
    let _ = std::fs::remove_file(&file);
}

#[test]
fn the_demo_explains_a_token_file_it_cannot_use_and_exits_2() {
    let empty = token_file("empty", "\n");
    let missing = std::env::temp_dir().join("agentgate-demo-no-such-token-file");
    for (file, says) in [
        (&empty, "is empty"),
        (&missing, "cannot read the token file"),
    ] {
        let out = demo_once(
            &[
                "--listen",
                "127.0.0.1:0",
                "--token-file",
                file.to_str().expect("UTF-8"),
            ],
            &[],
        );
        assert_eq!(out.status.code(), Some(2));
        assert!(text(&out.stderr).contains(says), "{}", text(&out.stderr));
    }
    let out = demo_once(&["--listen", "127.0.0.1:0"], &[("AGENTGATE_TOKEN", "")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("AGENTGATE_TOKEN is set but empty"));
    let _ = std::fs::remove_file(&empty);
}

#[test]
fn the_demo_refuses_0_0_0_0_without_a_token_unless_allow_public_and_then_warns() {
    let refused = demo_once(&["--listen", "0.0.0.0:0"], &[]);
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("refusing to serve 0.0.0.0:0 without a token"),
        "{stderr}"
    );
    assert!(stderr.contains("--allow-public"), "{stderr}");
    assert!(
        text(&refused.stdout).is_empty(),
        "nothing served, nothing printed"
    );

    let allowed = demo_once(&["--listen", "0.0.0.0:0", "--allow-public"], &[]);
    let stderr = text(&allowed.stderr);
    assert!(allowed.status.success(), "{stderr}");
    assert!(stderr.contains("WARNING"), "{stderr}");
    // The library's own warning, in the JSON log.
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("\"level\":\"warn\"") && l.contains("without a token")),
        "{stderr}"
    );

    let with_token = demo_once(&["--listen", "0.0.0.0:0"], &[("AGENTGATE_TOKEN", "t0k")]);
    let stderr = text(&with_token.stderr);
    assert!(with_token.status.success(), "{stderr}");
    assert!(!stderr.contains("without a token"), "{stderr}");
}

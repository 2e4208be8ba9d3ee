//! `agentgate-obs demo` as a child process, for the tests that need the
//! binary itself.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running demo; killed when dropped.
pub struct Demo {
    child: Child,
    /// The address its server bound.
    pub addr: SocketAddr,
    /// The dashboard URL it printed.
    pub dashboard: String,
    /// The WebSocket URL it printed.
    pub websocket: String,
    lines: mpsc::Receiver<String>,
}

impl Demo {
    /// Starts the demo with `args` (plus `--listen 127.0.0.1:0`) and waits
    /// for the URLs it prints.
    pub fn start(args: &[&str]) -> Demo {
        Demo::start_with_env(args, &[])
    }

    /// [`Demo::start`] with extra environment variables (and no
    /// `AGENTGATE_TOKEN` from the caller's).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Demo {
        Demo::start_subcommand("demo", args, env)
    }

    /// `agentgate-obs replay` with `args` (plus `--listen 127.0.0.1:0`):
    /// it prints the same URLs.
    pub fn replay(args: &[&str]) -> Demo {
        Demo::start_subcommand("replay", args, &[])
    }

    /// [`Demo::start`] in a process whose limits on open files the shell
    /// sets before it becomes the demo: `ulimit` is given `limits` (say
    /// `-Sn 1024`, the soft limit a login shell commonly starts with).
    pub fn start_with_file_limit(limits: &str, args: &[&str]) -> Demo {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit {limits} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_agentgate-obs"));
        Demo::spawn(command, "demo", args, &[])
    }

    fn start_subcommand(subcommand: &str, args: &[&str], env: &[(&str, &str)]) -> Demo {
        let command = Command::new(env!("CARGO_BIN_EXE_agentgate-obs"));
        Demo::spawn(command, subcommand, args, env)
    }

    fn spawn(mut command: Command, subcommand: &str, args: &[&str], env: &[(&str, &str)]) -> Demo {
        let mut child = command
            .arg(subcommand)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("AGENTGATE_TOKEN")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the demo starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = super::stdout_lines(stdout);
        let mut demo = Demo {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dashboard: String::new(),
            websocket: String::new(),
            lines,
        };
        while demo.websocket.is_empty() {
            let line = demo.next_line(Duration::from_secs(20));
            if let Some(url) = line.strip_prefix("dashboard: ") {
                demo.dashboard = url.to_owned();
                let host = url
                    .trim_start_matches("http://")
                    .split('/')
                    .next()
                    .unwrap_or_default();
                demo.addr = host.parse().expect("the dashboard URL names host:port");
            } else if let Some(url) = line.strip_prefix("websocket: ") {
                demo.websocket = url.to_owned();
            }
        }
        demo
    }

    /// The next line the demo printed, within `limit`.
    pub fn next_line(&mut self, limit: Duration) -> String {
        match self.lines.recv_timeout(limit) {
            Ok(line) => line,
            Err(_) => panic!("the demo printed nothing more within {limit:?}"),
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

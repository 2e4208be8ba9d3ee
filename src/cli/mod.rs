//! Command-line parsing and dispatch.

/// `println!` that ignores a closed stdout: `agentgate-obs demo | head`
/// must not kill the server the user is watching (`println!` panics on a
/// broken pipe, because Rust programs ignore SIGPIPE).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod demo;
mod replay;
mod report;
mod serve;
mod summary;
mod token;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Live observability for agent execution engines.
#[derive(Debug, Parser)]
#[command(name = "agentgate-obs", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a simulated engine through the real pipeline.
    Demo(demo::DemoArgs),
    /// Serve a journal's runs (dashboard, /api, /metrics, /ws) as a live process would.
    Replay(replay::ReplayArgs),
    /// Print the `demo --json` summary of a journal; exit 0 only if every run succeeded.
    Summary(summary::SummaryArgs),
    /// Follow a server's runs in the terminal: a progress bar per active run, a line per finished one.
    Watch(watch::WatchArgs),
}

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Summary(args) => summary::run(args),
        Command::Watch(args) => watch::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("agentgate-obs: {error}");
            if error.downcast_ref::<Usage>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A command line that cannot be acted on (exit status 2, as clap's own
/// usage errors).
#[derive(Debug)]
pub(crate) struct Usage(pub(crate) String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

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

mod delivery;
mod demo;
mod push;
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
    /// Rebuild the metrics from journal files and push them once (e.g. after a crash); a group is replaced, so pushing twice counts nothing twice.
    Push(push::PushArgs),
    /// Follow a server's runs in the terminal: a progress bar per active run, a line per finished one.
    Watch(watch::WatchArgs),
}

pub(crate) fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // Help and --version are not errors; clap prints them.
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() {
                Exit::Input as u8
            } else {
                Exit::Ok as u8
            });
        }
    };
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Push(args) => push::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Summary(args) => summary::run(args),
        Command::Watch(args) => watch::run(args),
    };
    let exit = result.unwrap_or_else(|failure| {
        failure.report();
        failure.exit
    });
    ExitCode::from(exit as u8)
}

/// The exit status of every subcommand: the table in docs/OPERATIONS.md,
/// "Exit codes".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Exit {
    /// Done as asked; where the command waits for the runs to end
    /// (`demo --exit-when-done`, `summary`, `watch --until-idle`), every
    /// run succeeded.
    Ok = 0,
    /// Done, but a run failed, was canceled or never finished (or there
    /// was no run at all).
    RunsFailed = 1,
    /// A command line that cannot be acted on, or input that cannot be
    /// used: a bad flag or value, an address that is not one, a public
    /// address without a token, a missing or unreadable file (journal,
    /// token, log), a token the server refuses, a URL that is not its
    /// stream.
    Input = 2,
    /// The environment did not cooperate: the server could not bind its
    /// address, the stream to watch could not be reached in time, or
    /// `push` could not deliver (no answer, 5xx, 429).
    Unavailable = 3,
    /// Anything else: the process could not set itself up (a thread, the
    /// signal handler).
    Internal = 4,
}

/// Why a subcommand stopped early: its exit status and what to tell the
/// user on stderr.
#[derive(Debug)]
pub(crate) struct Failure {
    exit: Exit,
    message: String,
}

impl Failure {
    fn new(exit: Exit, message: impl std::fmt::Display) -> Failure {
        Failure {
            exit,
            message: message.to_string(),
        }
    }

    /// Says what failed on stderr.
    fn report(&self) {
        eprintln!("agentgate-obs: {}", self.message);
    }
}

impl From<Usage> for Failure {
    fn from(usage: Usage) -> Failure {
        Failure::new(Exit::Input, usage)
    }
}

impl From<agentgate_obs::Error> for Failure {
    fn from(error: agentgate_obs::Error) -> Failure {
        use agentgate_obs::Error;
        let exit = match &error {
            Error::Config(_)
            | Error::LogFile { .. }
            | Error::Journal { .. }
            | Error::NotARegularFile { .. }
            | Error::InvalidUrl { .. } => Exit::Input,
            // The address resolved (`ServeArgs` checks): binding it failed.
            Error::Bind { .. } => Exit::Unavailable,
            Error::Delivery { refused: true, .. } => Exit::Input,
            // Not reached, or errors until the wait ran out: try again later.
            Error::Delivery { .. } => Exit::Unavailable,
            _ => Exit::Internal,
        };
        Failure::new(exit, error)
    }
}

impl From<agentgate_obs::journal::JournalError> for Failure {
    fn from(error: agentgate_obs::journal::JournalError) -> Failure {
        Failure::new(Exit::Input, error)
    }
}

impl From<agentgate_obs::logging::LogBridgeError> for Failure {
    fn from(error: agentgate_obs::logging::LogBridgeError) -> Failure {
        Failure::new(Exit::Internal, error)
    }
}

impl From<ctrlc::Error> for Failure {
    fn from(error: ctrlc::Error) -> Failure {
        Failure::new(
            Exit::Internal,
            format_args!("cannot install the Ctrl-C handler: {error}"),
        )
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

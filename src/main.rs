//! `agentgate-obs`: the demo engine and the terminal client.
#![forbid(unsafe_code)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}

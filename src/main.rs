//! `agentgate-obs`: the demo engine and the terminal client.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}

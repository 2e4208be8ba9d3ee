//! `agentgate-obs replay FILE...`: a journal served as if it were live.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agentgate_obs::Overflow;
use agentgate_obs::journal::{DEFAULT_MAX_LINE_BYTES, ReadLimits, ReplayReport, Speed};
use agentgate_obs::logging::Level;
use clap::Args;

use super::demo::print_urls;
use super::serve::ServeArgs;
use super::{Exit, Failure};

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// Journal files (`demo --events-out`, `Builder::journal`); a rotated
    /// set may be given in any order (`FILE*`): it is read oldest first.
    /// `-` is standard input; a FIFO is read until its writer closes it.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// `max` loads everything at once; a number from 0.001 to 1000000
    /// replays with the original timing divided by it (1: real time, 10:
    /// ten times faster).
    #[arg(long, default_value = "max", value_parser = parse_speed)]
    speed: Speed,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    serve: ServeArgs,
}

fn parse_speed(text: &str) -> Result<Speed, String> {
    text.parse()
}

/// How journal input is bounded (`replay`, `summary`).
#[derive(Debug, Args)]
pub(crate) struct InputArgs {
    /// Lines longer than this many bytes are skipped and counted, never
    /// held whole; a line still going after 1024 times this ends the
    /// reading with an error (the input is not a journal).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_LINE_BYTES, value_parser = parse_line_cap)]
    max_line_bytes: usize,
}

impl InputArgs {
    pub(crate) fn limits(&self) -> ReadLimits {
        ReadLimits::default().max_line_bytes(self.max_line_bytes)
    }
}

fn parse_line_cap(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(bytes) if bytes >= 1 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(bytes),
        _ => Err(format!("a number of bytes of at least 1, not {text:?}")),
    }
}

pub(crate) fn run(args: ReplayArgs) -> Result<Exit, Failure> {
    let (builder, token) = args.serve.builder()?;
    // Unreadable files are an error before the server starts, not after.
    agentgate_obs::journal::JournalReader::open_with(&args.files, args.input.limits())?;
    note_missing_rotations(&args.files);
    // Warnings only: a progress line per replayed event would flood stderr.
    let obs = builder
        .serving_replay()
        .overflow(Overflow::Block)
        .log_level(Level::Warn)
        .start()?;
    print_urls(&obs, token.is_some());

    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = stop.clone();
    ctrlc::set_handler(move || on_signal.store(true, Ordering::Relaxed))?;

    let started = std::time::Instant::now();
    let report = obs.replay_with(&args.files, args.speed, args.input.limits(), &stop)?;
    let elapsed = started.elapsed();
    warn_about(&report);
    say!(
        "replayed {} events from {} file(s) in {:.3} s; Ctrl-C to stop",
        report.events,
        report.read.files,
        elapsed.as_secs_f64()
    );
    // Relaxed: a request to stop soon.
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    obs.shutdown();
    Ok(Exit::Ok)
}

/// Tells, on stderr, what a replay skipped or found missing.
pub(crate) fn warn_about(report: &ReplayReport) {
    let read = &report.read;
    if read.skipped() > 0 {
        let first: Vec<String> = read.first_skipped.iter().map(ToString::to_string).collect();
        eprintln!(
            "agentgate-obs: warning: skipped {} line(s) that are not events \
             ({} blank, {} truncated, {} not JSON events, {} of unknown type, \
             {} over the line cap); first: {}",
            read.skipped(),
            read.blank,
            read.truncated,
            read.garbage,
            read.unknown_type,
            read.too_long,
            first.join(", ")
        );
    }
    if report.missing > 0 {
        eprintln!(
            "agentgate-obs: warning: {} event(s) missing from the journal (gaps in seq: \
             its writer fell behind, or older rotated files are not given)",
            report.missing
        );
    }
    if report.restarts > 0 {
        eprintln!(
            "agentgate-obs: note: seq restarts {} time(s): several processes appended to \
             this journal",
            report.restarts
        );
    }
}

/// Notes a rotated file (`FILE.1`) beside a given `FILE` that was not given.
pub(crate) fn note_missing_rotations(files: &[PathBuf]) {
    for file in files {
        let mut older = file.as_os_str().to_owned();
        older.push(".1");
        let older = PathBuf::from(older);
        if older.exists() && !files.contains(&older) {
            eprintln!(
                "agentgate-obs: note: {} exists but was not given; pass {}* to read the \
                 whole rotated set",
                older.display(),
                file.display()
            );
        }
    }
}

//! How `watch` shows the fleet: a live progress bar per active run on a
//! terminal; plain lines otherwise (a pipe, a file, a test), where bars
//! would be noise or, with indicatif, silently nothing.
//!
//! Either way stdout gets one line per finished run and the summary;
//! connection notices go to stderr.
//!
//! Everything shown comes from the server, which relays what the engine
//! (or anyone who can emit) put in ids and texts: every string crosses
//! [`sanitize`] on its way to the terminal (`say`, `tell`, the bars'
//! prefix and message, the lines printed above the bars), so none can move
//! the cursor, clear the screen, set the window title or forge a line.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::fleet::{Fleet, Key, RunView, Status};

const BAR_TEMPLATE: &str =
    "{prefix:<28!} {bar:24.cyan/blue} {pos:>2}/{len:<2} {wide_msg} {elapsed:>4}";

/// The terminal's bars, or nothing to draw.
pub(crate) enum Display {
    Bars {
        multi: MultiProgress,
        bars: HashMap<Key, ProgressBar>,
        style: ProgressStyle,
    },
    Plain,
}

impl std::fmt::Debug for Display {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Display::Bars { bars, .. } => write!(f, "Display::Bars({} bars)", bars.len()),
            Display::Plain => f.write_str("Display::Plain"),
        }
    }
}

impl Display {
    /// Bars when stdout is a terminal.
    pub(crate) fn new(terminal: bool) -> Display {
        if !terminal {
            return Display::Plain;
        }
        let style = ProgressStyle::with_template(BAR_TEMPLATE)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("━╸─");
        Display::Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            bars: HashMap::new(),
            style,
        }
    }

    /// Shows an active run's progress.
    pub(crate) fn active(&mut self, run: &RunView) {
        let Display::Bars { multi, bars, style } = self else {
            return;
        };
        let bar = bars.entry(run.key()).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(0).with_style(style.clone()));
            bar.set_prefix(clip(
                &sanitize(&format!("{} {}", run.work_order_id, run.run_id)),
                28,
            ));
            bar
        });
        bar.set_length(run.max_iterations.max(run.iteration));
        bar.set_position(run.iteration);
        let doing = if run.delivering {
            "delivering".to_owned()
        } else {
            run.phase.clone().unwrap_or_else(|| "starting".into())
        };
        bar.set_message(sanitize(&doing).into_owned());
    }

    /// Prints a finished run's line, taking its bar away.
    pub(crate) fn finished(&mut self, run: &RunView) {
        let line = finished_line(run, matches!(self, Display::Bars { .. }));
        match self {
            Display::Bars { multi, bars, .. } => {
                if let Some(bar) = bars.remove(&run.key()) {
                    bar.finish_and_clear();
                    multi.remove(&bar);
                }
                // Printed above the bars; a closed stdout has nobody to tell.
                let _ = multi.println(sanitize(&line));
            }
            Display::Plain => say(&line),
        }
    }

    /// Removes the bars of runs the fleet no longer has (a restarted server).
    pub(crate) fn forget_missing(&mut self, fleet: &Fleet) {
        if let Display::Bars { multi, bars, .. } = self {
            bars.retain(|key, bar| {
                let keep = fleet.get(key).is_some_and(|r| r.status == Status::Running);
                if !keep {
                    bar.finish_and_clear();
                    multi.remove(bar);
                }
                keep
            });
        }
    }

    /// A connection notice, on stderr.
    pub(crate) fn note(&self, text: &str) {
        match self {
            Display::Bars { multi, .. } => multi.suspend(|| tell(text)),
            Display::Plain => tell(text),
        }
    }

    /// Redraws the elapsed times.
    pub(crate) fn tick(&self) {
        if let Display::Bars { bars, .. } = self {
            for bar in bars.values() {
                bar.tick();
            }
        }
    }

    /// Clears every bar before the summary.
    pub(crate) fn clear(&mut self) {
        if let Display::Bars { multi, bars, .. } = self {
            for (_, bar) in bars.drain() {
                bar.finish_and_clear();
                multi.remove(&bar);
            }
            let _ = multi.clear();
        }
    }
}

/// A line on stdout. A reader that went away (`watch | head`) is not an
/// error worth a panic: the line is dropped.
pub(crate) fn say(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{}", sanitize(line));
}

/// A line on stderr, dropped likewise when nobody reads it.
pub(crate) fn tell(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{}", sanitize(line));
}

/// Text made safe for a terminal: line breaks and tabs become spaces;
/// every other control character (C0 with ESC, DEL, C1 U+0080–U+009F) and
/// the invisible direction controls that can reorder what is shown
/// (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069) and line or
/// paragraph separators (U+2028, U+2029) become U+FFFD, so tampering shows.
pub(crate) fn sanitize(text: &str) -> Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        c.is_control()
            || matches!(
                c,
                '\u{061C}'
                    | '\u{200E}'
                    | '\u{200F}'
                    | '\u{2028}'
                    | '\u{2029}'
                    | '\u{202A}'..='\u{202E}'
                    | '\u{2066}'..='\u{2069}'
            )
    }
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| match c {
                '\n' | '\r' | '\t' | '\u{2028}' | '\u{2029}' => ' ',
                c if unsafe_char(c) => '\u{FFFD}',
                c => c,
            })
            .collect(),
    )
}

/// `succeeded  wo-0001  run-0001-abc  2/5 iterations  1m 45s  https://…/pull/100 (CI pending)`
pub(crate) fn finished_line(run: &RunView, symbols: bool) -> String {
    let mark = match (symbols, run.status) {
        (false, _) => "",
        (true, Status::Succeeded) => "✔ ",
        (true, Status::Failed) => "✘ ",
        (true, Status::Canceled) => "⊘ ",
        (true, Status::Running) => "… ",
    };
    let mut line = format!(
        "{mark}{:<9}  {}  {}",
        run.status.as_str(),
        run.work_order_id,
        run.run_id
    );
    if run.max_iterations > 0 {
        line.push_str(&format!(
            "  {}/{} iterations",
            run.iteration, run.max_iterations
        ));
    }
    if let Some(d) = run.duration() {
        line.push_str(&format!("  {}", short_duration(d)));
    }
    match (&run.reason, &run.engine_result) {
        (Some(reason), _) => line.push_str(&format!("  {reason}")),
        (None, Some(result)) if run.status != Status::Succeeded => {
            line.push_str(&format!("  {result}"));
        }
        _ => {}
    }
    if let Some(pr) = &run.pr_url {
        line.push_str(&format!("  {pr}"));
    } else if run.delivery_failed {
        line.push_str("  delivery failed");
    }
    if let Some(ci) = &run.ci_status {
        line.push_str(&format!(" (CI {ci})"));
    }
    line
}

/// `text` (already sanitized) cut to `width` characters.
fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut clipped: String = text.chars().take(width.saturating_sub(1)).collect();
    clipped.push('…');
    clipped
}

/// `850ms`, `12.3s`, `4m05s`, `1h02m`.
pub(crate) fn short_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    match s {
        _ if ms < 1000 => format!("{ms}ms"),
        0..60 => format!("{:.1}s", d.as_secs_f64()),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The closing line: how the runs ended.
pub(crate) fn summary(fleet: &Fleet, watched: Duration) -> String {
    format!(
        "{} runs: {} succeeded, {} failed, {} canceled, {} still running · {} events in {}",
        fleet.total(),
        fleet.count(Status::Succeeded),
        fleet.count(Status::Failed),
        fleet.count(Status::Canceled),
        fleet.active(),
        fleet.events,
        short_duration(watched)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_text_cannot_break_a_line_move_the_cursor_or_reorder_itself() {
        assert_eq!(sanitize("a\nb\x1b[2Jc"), "a b\u{FFFD}[2Jc");
        assert_eq!(
            sanitize("run\x1b]0;title\x07\r\nsucceeded"),
            "run\u{FFFD}]0;title\u{FFFD}  succeeded"
        );
        assert_eq!(
            sanitize("\u{9b}31m\u{7f}\u{0}"),
            "\u{FFFD}31m\u{FFFD}\u{FFFD}"
        );
        assert_eq!(
            sanitize("a\u{202E}b\u{2066}c\u{2069}d\u{200F}e\u{2028}f"),
            "a\u{FFFD}b\u{FFFD}c\u{FFFD}d\u{FFFD}e f"
        );
        assert!(matches!(sanitize("plain ✔ ünïcode"), Cow::Borrowed(_)));
        assert_eq!(clip("abcdef", 4), "abc…");
    }

    #[test]
    fn a_finished_line_from_hostile_fields_is_one_clean_line_once_shown() {
        let mut run =
            super::super::fleet::RunView::for_test("wo\x1b[2J", "r\r\nsucceeded  wo  forged");
        run.status = Status::Failed;
        run.engine_result = Some("failed\x1b]0;pwned\x07".into());
        run.pr_url = Some("https://x/\u{202E}lp.exe".into());
        let line = finished_line(&run, true);
        let shown = sanitize(&line);
        assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
        assert!(!shown.contains('\u{202E}'));
        assert!(shown.contains("pwned"), "the text stays readable: {shown}");
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(short_duration(Duration::from_millis(12_345)), "12.3s");
        assert_eq!(short_duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(short_duration(Duration::from_secs(3720)), "1h02m");
    }
}

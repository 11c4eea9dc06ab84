//! Progress for people (bars and spinners on a terminal) and the phase log for finding where a
//! slow run spends its time.

use super::*;

/// Logs how long a phase of the run took (`--log-level debug`), for finding where a slow run
/// spends its time; `since` restarts for the next phase.
pub(super) fn phase(name: &str, since: &mut Instant) {
    tracing::debug!(
        phase = name,
        ms = since.elapsed().as_millis() as u64,
        rss_mib = resident_mib(),
        "run phase"
    );
    *since = Instant::now();
}

/// Progress is for people: shown only when stderr is a terminal, so logs and pipes stay clean.
pub(super) fn progress_bar(total: u64) -> indicatif::ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} applying {pos}/{len} [{bar:30}] {per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

pub(super) fn progress_spinner(message: &'static str) -> indicatif::ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return indicatif::ProgressBar::hidden();
    }
    let spinner = indicatif::ProgressBar::new_spinner().with_message(message);
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    spinner
}

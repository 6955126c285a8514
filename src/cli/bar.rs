//! The progress bar: indicatif on stderr, drawn only where someone can see it (a terminal, a
//! run long enough to need it, no `--quiet`), so that logs and pipes stay clean.

use faiss_nn::progress::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Below this many rows a flat search finishes in about a second; a bar would only flicker.
const MIN_ROWS: usize = 20_000;

/// A [`Progress`] drawn as a bar on stderr, or nothing.
#[derive(Debug)]
pub(crate) struct Bar(ProgressBar);

impl Bar {
    /// A bar when `quiet` is off, stderr is a terminal and there are at least [`MIN_ROWS`] rows.
    pub(crate) fn new(rows: usize, quiet: bool) -> Self {
        use std::io::IsTerminal;
        if quiet || rows < MIN_ROWS || !std::io::stderr().is_terminal() {
            return Bar(ProgressBar::hidden());
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        let style =
            ProgressStyle::with_template("searching {wide_bar} {percent:>3}% {elapsed}, about {eta} left").unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Bar(bar)
    }

    /// Removes the bar from the terminal.
    pub(crate) fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Bar {
    fn start(&self, total: u64) {
        self.0.set_length(total);
        self.0.reset();
    }

    fn advance(&self, units: u64) {
        self.0.inc(units);
    }
}

//! Progress reporting from long searches (the CLI draws a bar; library users may ignore it).

/// Receives progress as units of work (query rows or tiles) complete, and may stop the work.
/// Implementations must be cheap: backends call `advance` and `cancelled` from worker threads.
pub trait Progress: Sync {
    /// Announces the total number of units. Called once, before any `advance`.
    fn start(&self, total: u64);
    /// `units` more are done.
    fn advance(&self, units: u64);
    /// True once the caller wants the search stopped (the Python package sets it on Ctrl-C).
    /// The CPU searches look between units of work and then end with [`crate::Error::Cancelled`]
    /// instead of a result; a GPU search or a faiss training runs to its end.
    fn cancelled(&self) -> bool {
        false
    }
}

/// [`crate::Error::Cancelled`] for `what` where `progress` asks to stop.
pub(crate) fn check(progress: &dyn Progress, what: &str) -> crate::Result<()> {
    if progress.cancelled() {
        Err(crate::Error::Cancelled { what: what.into() })
    } else {
        Ok(())
    }
}

/// Progress that goes nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: u64) {}
    fn advance(&self, _: u64) {}
}

//! Progress reporting from long searches (the CLI draws a bar; library users may ignore it).

/// Receives progress as units of work (query rows or tiles) complete. Implementations must be
/// cheap: backends call `advance` from worker threads.
pub trait Progress: Sync {
    /// Announces the total number of units. Called once, before any `advance`.
    fn start(&self, total: u64);
    /// `units` more are done.
    fn advance(&self, units: u64);
}

/// Progress that goes nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: u64) {}
    fn advance(&self, _: u64) {}
}

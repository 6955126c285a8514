//! The crate's one error type. Every variant names what was wrong and where, so that a user can
//! find the offending row, column, option or file without a debugger; [`Error::kind`] sorts the
//! variants into the few classes a caller acts on (fix the input, pick another device, retry with
//! less memory, …) without matching on messages.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A lower-level error kept as the cause of an [`Error`] (the CUDA driver's, cuBLAS's).
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What class of failure an [`Error`] is; the Python package maps each to an exception type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller's data, arguments or files are wrong (Python: `ValueError`).
    BadInput,
    /// Valid, but this build, machine or backend cannot serve it (no CUDA, an index without the
    /// capability asked for).
    Unsupported,
    /// A GPU failed (driver, cuBLAS, kernel launch).
    Device,
    /// Memory ran out, on a device or for a plan that cannot fit.
    OutOfMemory,
    /// faiss failed on input this crate had accepted.
    Backend,
    /// The operating system refused a file operation.
    Io,
    /// A bug in this crate (a worker thread panicked); please report it.
    Internal,
    /// The caller stopped the search ([`crate::Progress::cancelled`]); nothing is wrong.
    Cancelled,
}

/// Everything that can go wrong, with the context needed to act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The data set (or a query set) holds no rows, or its rows have no dimensions.
    #[error("{what} is empty: {detail}")]
    Empty {
        /// Which input ("embeddings", "queries", column name, …).
        what: String,
        /// What exactly is empty.
        detail: String,
    },
    /// A row does not have the dimension of the others.
    #[error("ragged rows in {what}: row {row} has {len} values, expected {expected} (the dimension of row 0)")]
    Ragged {
        /// Which input.
        what: String,
        /// Zero-based row number.
        row: usize,
        /// Its length.
        len: usize,
        /// The dimension taken from the first row.
        expected: usize,
    },
    /// A flat buffer whose length is not a multiple of the dimension.
    #[error("{what}: {len} values do not divide into rows of dimension {d}")]
    Shape {
        /// Which input.
        what: String,
        /// Buffer length.
        len: usize,
        /// Expected dimension.
        d: usize,
    },
    /// NaN or ±inf in the data.
    #[error("{what}: row {row}, component {col} is {value}; only finite values can be searched")]
    NonFinite {
        /// Which input.
        what: String,
        /// Zero-based row.
        row: usize,
        /// Zero-based component.
        col: usize,
        /// The offending value.
        value: f32,
    },
    /// An invalid `k`.
    #[error("k = {k} is invalid: {reason}")]
    InvalidK {
        /// The requested k.
        k: usize,
        /// Why it cannot be served.
        reason: String,
    },
    /// A metric integer that faiss does not define, or that this crate cannot serve.
    #[error("metric_type {metric}: {reason}")]
    Metric {
        /// The integer given.
        metric: i64,
        /// Why it is rejected.
        reason: String,
    },
    /// Any other invalid argument (option, builder value, factory string).
    #[error("invalid {name}: {reason}")]
    InvalidArgument {
        /// The argument's name as the user knows it.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A table or file has no column (field) of the name asked for.
    #[error("{}: {location}: no column {column:?}; the columns are: {}", path.display(), list_or_none(available))]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// Where in it ("schema", "line 3").
        location: String,
        /// The column asked for.
        column: String,
        /// The columns that exist there.
        available: Vec<String>,
    },
    /// faiss refused or failed; `context` says what we asked of it.
    #[error("faiss failed while {context}: {message}")]
    Faiss {
        /// What we were doing (e.g. `building index "IVF256,Flat"`).
        context: String,
        /// faiss's own message.
        message: String,
    },
    /// A feature this build or this machine does not have (CUDA, the faiss backend).
    #[error("{what} is not available: {reason}")]
    Unavailable {
        /// What was asked for.
        what: String,
        /// Why it cannot be had, and what to do about it.
        reason: String,
    },
    /// A CUDA device id that does not exist on this machine.
    #[error("CUDA device {id} does not exist: this machine has {count} CUDA device(s)")]
    BadDevice {
        /// The id asked for.
        id: usize,
        /// Devices visible.
        count: usize,
    },
    /// A CUDA driver, cuBLAS or kernel failure on a device.
    #[error("CUDA error on device {device} while {context}: {message}")]
    Cuda {
        /// Device ordinal.
        device: usize,
        /// What we were doing.
        context: String,
        /// The driver's (or cuBLAS's) message.
        message: String,
        /// The driver's or cuBLAS's own error value, where there is one.
        #[source]
        source: Option<Cause>,
    },
    /// Memory ran out even after retrying with the smallest tiles, or a plan cannot fit.
    #[error("out of memory on {device} while {context}: needed {needed_bytes} bytes")]
    OutOfMemory {
        /// Where ("cuda:0", "cpu").
        device: String,
        /// What we were doing.
        context: String,
        /// The allocation that failed.
        needed_bytes: usize,
    },
    /// One shard of a sharded search failed; the whole call fails with it.
    #[error("shard {shard} (device {device}) failed: {source}")]
    Shard {
        /// Shard number.
        shard: usize,
        /// The device it ran on.
        device: String,
        /// The shard's own error.
        #[source]
        source: Box<Error>,
    },
    /// Reading or writing a file failed at the operating-system level.
    #[error("{action} {path}: {source}")]
    Io {
        /// "cannot read", "cannot write", …
        action: String,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file could be read but its content is not what we need.
    #[error("{path}: {location}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Where in it (line, row, column, header).
        location: String,
        /// What is wrong.
        message: String,
    },
    /// A threshold join found more pairs than it was allowed to ([`crate::range`]'s `max_pairs`):
    /// the threshold is looser than intended, or the cap too low.
    #[error("threshold {threshold:?} passes more than max_pairs = {max_pairs} pairs: {found} found among {rows} rows before the join stopped; {detail}")]
    TooManyPairs {
        /// The threshold.
        threshold: f64,
        /// Pairs found when the join stopped.
        found: usize,
        /// Rows with at least one of those pairs.
        rows: usize,
        /// The cap.
        max_pairs: usize,
        /// The scores found, and a tighter threshold to try.
        detail: String,
    },
    /// The caller asked the search to stop ([`crate::Progress::cancelled`]) and it did, between
    /// two units of its work.
    #[error("{what} was cancelled")]
    Cancelled {
        /// The search that stopped.
        what: String,
    },
    /// A bug: a worker thread panicked. The message says where; please report it.
    #[error("internal error in {what} (a bug in faiss-nn, please report it): {message}")]
    Internal {
        /// The component that failed.
        what: String,
        /// The panic's message.
        message: String,
    },
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
    }
}

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument { name: name.into(), reason: reason.into() }
    }

    /// Shorthand for [`Error::Format`].
    pub fn format(path: impl Into<PathBuf>, location: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Format { path: path.into(), location: location.into(), message: message.into() }
    }

    /// An [`Error::Internal`] from a caught panic's payload.
    pub fn from_panic(what: impl Into<String>, payload: &(dyn std::any::Any + Send)) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a worker thread panicked".into());
        Error::Internal { what: what.into(), message }
    }

    /// The class of this failure (a shard's error has its cause's class).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Empty { .. }
            | Error::Ragged { .. }
            | Error::Shape { .. }
            | Error::NonFinite { .. }
            | Error::InvalidK { .. }
            | Error::Metric { .. }
            | Error::InvalidArgument { .. }
            | Error::MissingColumn { .. }
            | Error::Format { .. }
            | Error::TooManyPairs { .. }
            | Error::BadDevice { .. } => ErrorKind::BadInput,
            Error::Unavailable { .. } => ErrorKind::Unsupported,
            Error::Faiss { .. } => ErrorKind::Backend,
            Error::Cuda { .. } => ErrorKind::Device,
            Error::OutOfMemory { .. } => ErrorKind::OutOfMemory,
            Error::Shard { source, .. } => source.kind(),
            Error::Io { .. } => ErrorKind::Io,
            Error::Internal { .. } => ErrorKind::Internal,
            Error::Cancelled { .. } => ErrorKind::Cancelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_cause() {
        assert_eq!(Error::invalid("k", "0").kind(), ErrorKind::BadInput);
        assert_eq!(Error::BadDevice { id: 3, count: 1 }.kind(), ErrorKind::BadInput);
        let oom = Error::OutOfMemory { device: "cuda:0".into(), context: "x".into(), needed_bytes: 1 };
        let shard = Error::Shard { shard: 1, device: "cuda:0".into(), source: Box::new(oom) };
        assert_eq!(shard.kind(), ErrorKind::OutOfMemory);
        let e = Error::from_panic("cpu worker", &"boom");
        assert_eq!(e.kind(), ErrorKind::Internal);
        assert!(e.to_string().contains("boom"), "{e}");
    }

    #[test]
    fn missing_column_lists_what_exists() {
        let e = Error::MissingColumn { path: "t.parquet".into(), location: "schema".into(), column: "vec".into(), available: vec!["text".into(), "e".into()] };
        assert_eq!(e.to_string(), "t.parquet: schema: no column \"vec\"; the columns are: \"text\", \"e\"");
    }
}

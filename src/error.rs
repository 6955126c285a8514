//! The crate's one error type. Every variant names what was wrong and where, so that a user can
//! find the offending row, column, flag or file without a debugger.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

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
    /// Any other invalid argument (flag, option, builder value).
    #[error("invalid {name}: {reason}")]
    InvalidArgument {
        /// The argument's name as the user knows it.
        name: String,
        /// What is wrong with it.
        reason: String,
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
        /// The driver's message.
        message: String,
    },
    /// A device ran out of memory even after retrying with the smallest tiles.
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
}

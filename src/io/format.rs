//! Which file format a path holds, decided by its extension alone: the CLI must know the output
//! format before it searches, and a misnamed input is easier to explain than a mis-sniffed one.

use crate::error::{Error, Result};
use std::path::Path;

/// A file format this crate reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Apache Parquet (`.parquet`, `.pq`): read and written.
    Parquet,
    /// JSON Lines, one object per line (`.jsonl`, `.ndjson`, `.json`): read and written.
    Jsonl,
    /// A NumPy `.npy` array of shape `(n, d)`: read only (it cannot hold the neighbour columns).
    Npy,
}

const KNOWN: &str = "expected .parquet (or .pq), .jsonl, .ndjson, .json or .npy";
const KNOWN_OUTPUT: &str = "expected .parquet (or .pq), .jsonl, .ndjson or .json";

impl Format {
    /// The format of an input file, from its extension (case-insensitive).
    pub fn from_path(path: &Path) -> Result<Format> {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("parquet" | "pq") => Ok(Format::Parquet),
            Some("jsonl" | "ndjson" | "json") => Ok(Format::Jsonl),
            Some("npy") => Ok(Format::Npy),
            Some(other) => Err(Error::format(path, "file name", format!("unknown extension \".{other}\"; {KNOWN}"))),
            None => Err(Error::format(path, "file name", format!("no extension to tell the format by; {KNOWN}"))),
        }
    }

    /// The format of an output file: like [`Format::from_path`], but `.npy` is refused because
    /// an array cannot carry the input's other columns and the neighbour lists.
    pub fn output_from_path(path: &Path) -> Result<Format> {
        let known = Format::from_path(path).map_err(|_| {
            let ext = path.extension().map(|e| format!("unknown extension \".{}\"", e.to_string_lossy()));
            Error::format(path, "file name", format!("{}; {KNOWN_OUTPUT}", ext.as_deref().unwrap_or("no extension to tell the format by")))
        })?;
        match known {
            Format::Npy => Err(Error::format(
                path,
                "file name",
                "cannot write .npy: the output holds columns (the input's plus nn_indices and nn_scores); \
                 use .parquet or .jsonl",
            )),
            f => Ok(f),
        }
    }

    /// Human name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::Parquet => "Parquet",
            Format::Jsonl => "JSON Lines",
            Format::Npy => "NumPy .npy",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions() {
        assert_eq!(Format::from_path(Path::new("a/b.PARQUET")).unwrap(), Format::Parquet);
        assert_eq!(Format::from_path(Path::new("b.ndjson")).unwrap(), Format::Jsonl);
        assert_eq!(Format::from_path(Path::new("b.npy")).unwrap(), Format::Npy);
        let e = Format::from_path(Path::new("b.csv")).unwrap_err().to_string();
        assert!(e.contains(".csv") && e.contains(".parquet"), "{e}");
        assert!(Format::from_path(Path::new("noext")).is_err());
        assert!(Format::output_from_path(Path::new("x.npy")).unwrap_err().to_string().contains(".npy"));
        // An unknown output extension lists what can be written: not .npy.
        let e = Format::output_from_path(Path::new("b.csv")).unwrap_err().to_string();
        assert!(e.contains(".csv") && e.contains(".pq") && !e.contains(".npy"), "{e}");
    }
}

//! Output files, written atomically: everything goes to a temporary file in the output's own
//! directory, renamed over the output only once complete. A failed run therefore leaves no
//! output and no partial file (the temporary file is deleted when the [`Output`] is dropped),
//! and creating the temporary file up front makes an unwritable destination fail before the
//! search rather than after it.

use super::dataset::Dataset;
use super::format::Format;
use crate::error::{Error, Result};
use crate::neighbours::Neighbours;
use arrow_array::RecordBatch;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

/// The temporary file's suffix, so that a file left by a killed process is recognisable.
const TEMP_SUFFIX: &str = ".faiss-nn-tmp";
/// Random characters in the temporary file's name.
const TEMP_RAND: usize = 6;
/// The longest file name most file systems take (bytes).
const NAME_MAX: usize = 255;

/// `.<name>.`, with `name` cut (at a character boundary) so that the whole temporary name stays
/// within [`NAME_MAX`] even when the output's own name is as long as allowed.
fn temp_prefix(name: &str) -> String {
    let room = NAME_MAX - 2 - TEMP_RAND - TEMP_SUFFIX.len();
    let mut end = name.len().min(room);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!(".{}.", &name[..end])
}

/// An output file being prepared: create it with [`Output::create`], fill it with
/// [`Output::write`]. Dropping it unwritten removes every trace.
#[derive(Debug)]
pub struct Output {
    path: PathBuf,
    format: Format,
    temp: NamedTempFile,
}

impl Output {
    /// Checks the format (from the extension) and creates the temporary file next to `path`.
    pub fn create(path: &Path) -> Result<Output> {
        let format = Format::output_from_path(path)?;
        if path.is_dir() {
            return Err(Error::invalid(
                "output",
                format!("{} is a directory; give a file name such as {}", path.display(), path.join("out.parquet").display()),
            ));
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let prefix = temp_prefix(&name);
        let mut b = tempfile::Builder::new();
        b.prefix(&prefix).suffix(TEMP_SUFFIX).rand_bytes(TEMP_RAND);
        // NamedTempFile defaults to owner-only access; the output should get the permissions
        // of any file the user creates (0666 less the umask).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            b.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let missing = match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => None,
            Ok(_) => Some(std::io::Error::new(std::io::ErrorKind::NotADirectory, format!("{} is not a directory", dir.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Some(std::io::Error::new(std::io::ErrorKind::NotFound, format!("directory {} does not exist", dir.display())))
            }
            Err(e) => Some(e), // e.g. a parent that cannot be searched: the OS says so
        };
        if let Some(source) = missing {
            return Err(Error::Io { action: "cannot write".into(), path: path.into(), source });
        }
        // tempfile's errors name the temporary file; the user named the output (and an OS
        // error's own text, "Permission denied (os error 13)", says the rest).
        let temp = b.tempfile_in(dir).map_err(|e| {
            let source = e.raw_os_error().map_or(e, std::io::Error::from_raw_os_error);
            Error::Io { action: "cannot write".into(), path: path.into(), source }
        })?;
        Ok(Output { path: path.into(), format, temp })
    }

    /// The temporary file the output is written to before it is renamed into place (named
    /// `.<output name>.<random>.faiss-nn-tmp`, in the output's directory).
    pub fn temp_path(&self) -> &Path {
        self.temp.path()
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format chosen by the extension.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Writes the dataset's rows and columns plus `nn_indices` and `nn_scores`, then moves the
    /// file into place.
    pub fn write(mut self, dataset: &Dataset, nn: &Neighbours) -> Result<()> {
        let (schema, batches) = dataset.with_neighbours(nn)?;
        let io_err = |path: &Path, source| Error::Io { action: "cannot write".into(), path: path.into(), source };
        match self.format {
            Format::Parquet => {
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                super::write_parquet::write_parquet(self.temp.as_file_mut(), schema, &batches, threads)
            }
            _ => write_jsonl(self.temp.as_file_mut(), &batches),
        }
        .map_err(|source| io_err(&self.path, source))?;
        self.temp.as_file().sync_all().map_err(|source| io_err(&self.path, source))?;
        self.temp.persist(&self.path).map_err(|e| io_err(&self.path, e.error))?;
        Ok(())
    }
}

/// Writes `dataset` with its neighbours to `path` (format by extension), atomically.
pub fn write_with_neighbours(dataset: &Dataset, nn: &Neighbours, path: &Path) -> Result<()> {
    Output::create(path)?.write(dataset, nn)
}

/// An encoder's error as an I/O error of the output file.
pub(super) fn other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// One JSON object per line, null fields written as `null` (not dropped). arrow-json writes
/// non-finite floats (the ±inf of unfilled neighbour slots) as `null`, keeping every line valid
/// JSON; a unit test holds it to that.
fn write_jsonl(file: &mut std::fs::File, batches: &[RecordBatch]) -> std::io::Result<()> {
    let mut w = arrow_json::WriterBuilder::new().with_explicit_nulls(true).build::<_, arrow_json::writer::LineDelimited>(BufWriter::new(file));
    for b in batches {
        w.write(b).map_err(other)?;
    }
    w.finish().map_err(other)?;
    w.into_inner().flush()
}

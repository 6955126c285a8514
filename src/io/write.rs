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
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

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
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let prefix = format!(".{name}.");
        let mut b = tempfile::Builder::new();
        b.prefix(&prefix).suffix(".tmp");
        // NamedTempFile defaults to owner-only access; the output should get the permissions
        // of any file the user creates (0666 less the umask).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            b.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let temp = b.tempfile_in(dir).map_err(|source| Error::Io { action: "cannot write".into(), path: path.into(), source })?;
        Ok(Output { path: path.into(), format, temp })
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
            Format::Parquet => write_parquet(self.temp.as_file_mut(), schema, &batches),
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

fn other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn write_parquet(file: &mut std::fs::File, schema: SchemaRef, batches: &[RecordBatch]) -> std::io::Result<()> {
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
    // ArrowWriter buffers its output itself.
    let mut w = ArrowWriter::try_new(file, schema, Some(props)).map_err(other)?;
    for b in batches {
        w.write(b).map_err(other)?;
    }
    w.into_inner().map_err(other)?.flush()
}

/// One JSON object per line. arrow-json writes non-finite floats (the ±inf of unfilled
/// neighbour slots) as `null`, keeping every line valid JSON; a unit test holds it to that.
fn write_jsonl(file: &mut std::fs::File, batches: &[RecordBatch]) -> std::io::Result<()> {
    let mut w = arrow_json::LineDelimitedWriter::new(BufWriter::new(file));
    for b in batches {
        w.write(b).map_err(other)?;
    }
    w.finish().map_err(other)?;
    w.into_inner().flush()
}

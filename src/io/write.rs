//! Output files, written atomically: everything goes to a temporary file in the output's own
//! directory, renamed over the output only once complete. A failed run therefore leaves no
//! output and no partial file (the temporary file is deleted when the [`Output`] is dropped).
//! [`Output::create`] proves the destination writable by creating an unnamed temporary file
//! there, so an unwritable destination fails before the search rather than after it, while the
//! real temporary file exists only while the output is written: a process killed during the
//! search (SIGKILL, a CPU-time limit) leaves nothing behind. An output that is a symbolic link
//! is written through it (the link stays, its target is replaced), and an output that is the
//! input file itself is refused.

use super::dataset::Dataset;
use super::format::Format;
use crate::dedup::Groups;
use crate::error::{Error, Result};
use crate::neighbours::Neighbours;
use crate::range::Pairs;
use arrow_array::{Array, ArrayRef, Float32Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use std::collections::HashSet;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
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

/// Hops through symbolic links followed before giving up (as the kernel's own limit).
const MAX_LINKS: usize = 40;

/// `path` with every symbolic link at its end followed (the target need not exist yet), so that
/// the output replaces the link's target rather than the link; a loop of links is an error.
fn resolve_links(path: &Path) -> Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match (std::fs::symlink_metadata(&p), std::fs::read_link(&p)) {
            (Ok(m), Ok(target)) if m.file_type().is_symlink() => {
                p = match p.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            _ => return Ok(p),
        }
    }
    let source = std::io::Error::other(format!("more than {MAX_LINKS} symbolic links in a row (a loop?)"));
    Err(Error::Io { action: "cannot write".into(), path: path.into(), source })
}

/// True when both paths name one existing file (device and inode, links followed).
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Refuses an output that is the input file (by any name: a link, `./`, a hard link).
pub fn check_not_input(output: &Path, input: &Path) -> Result<()> {
    if same_file(output, input) {
        return Err(Error::invalid("output", format!("{} is the input file {}; write the neighbours to another file", output.display(), input.display())));
    }
    Ok(())
}

/// An output file being prepared: create it with [`Output::create`], fill it with
/// [`Output::write`]. Dropping it unwritten removes every trace.
#[derive(Debug)]
pub struct Output {
    /// As the user gave it (for messages).
    path: PathBuf,
    /// What gets replaced: `path` with symbolic links followed.
    target: PathBuf,
    format: Format,
    /// The temporary file, from [`Output::begin`] on.
    temp: Option<NamedTempFile>,
    prefix: String,
    /// The temporary file holds the whole output ([`Output::fill`]).
    filled: bool,
}

impl Output {
    /// Checks the format (from the extension) and that a file can be created next to `path`
    /// (by creating an unnamed temporary one there).
    pub fn create(path: &Path) -> Result<Output> {
        // A directory first: "out/" has no extension either, but that is not what is wrong.
        let target = resolve_links(path)?;
        if target.is_dir() {
            return Err(Error::invalid(
                "output",
                format!("{} is a directory; give a file name such as {}", path.display(), path.join("out.parquet").display()),
            ));
        }
        let format = Format::output_from_path(path)?;
        let dir = dir_of(&target);
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let out = Output { path: path.into(), target: target.clone(), format, temp: None, prefix: temp_prefix(&name), filled: false };
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
        // The probe: a file without a name (O_TMPFILE; where the file system lacks it, one
        // unlinked as soon as it is created), so that a signal at this moment leaves nothing.
        tempfile::tempfile_in(dir).map_err(|e| cannot_write(&out.path, e))?;
        Ok(out)
    }

    /// Creates the temporary file the output is written to (named
    /// `.<output name>.<random>.faiss-nn-tmp`, in the directory of the output's target) and
    /// returns its path, for a caller that removes it when a signal ends the process.
    /// [`Output::write`] calls it where the caller did not.
    pub fn begin(&mut self) -> Result<&Path> {
        self.begin_with(|_| {})
    }

    /// [`Output::begin`], calling `named` with the temporary file's path just before the file
    /// is created (again with a new path should that name be taken), so that a caller can
    /// register it for removal with no moment in which the file exists unregistered.
    pub fn begin_with(&mut self, mut named: impl FnMut(&Path)) -> Result<&Path> {
        if self.temp.is_none() {
            let mut b = tempfile::Builder::new();
            b.prefix(&self.prefix).suffix(TEMP_SUFFIX).rand_bytes(TEMP_RAND);
            // Created here, not by tempfile (owner-only access): the output should get the
            // permissions of any file the user creates (0666 less the umask).
            let create = |path: &Path| {
                named(path);
                let mut o = std::fs::OpenOptions::new();
                o.read(true).write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o666);
                o.open(path)
            };
            let temp = b.make_in(dir_of(&self.target), create).map_err(|e| cannot_write(&self.path, e))?;
            self.temp = Some(temp);
        }
        Ok(self.temp.as_ref().map(NamedTempFile::path).expect("created above"))
    }

    /// Refuses, before any search, a table this output cannot hold as JSON Lines: JSON objects
    /// need unique keys (two input columns of one name), and the JSON writer must be able to
    /// encode every column's type (see [`Output::write`]). Parquet holds any table.
    pub fn check_columns(&self, dataset: &Dataset) -> Result<()> {
        if self.format == Format::Parquet {
            return Ok(());
        }
        let mut seen = HashSet::new();
        if let Some(name) = dataset.schema.fields().iter().map(|f| f.name()).find(|n| !seen.insert(n.as_str())) {
            return Err(Error::invalid(
                "output",
                format!("{} has two columns named {name:?}; a JSON object cannot hold both: write Parquet, or rename one", dataset.path.display()),
            ));
        }
        check_json_encodable(dataset, &self.path)
    }

    /// True when both outputs would replace the same file: their targets (links followed) in
    /// the same directory (however it is named: `out.parquet`, `./out.parquet`) under one name.
    pub fn same_destination(&self, other: &Output) -> bool {
        let resolve = |t: &Path| std::fs::canonicalize(dir_of(t)).ok().map(|d| d.join(t.file_name().unwrap_or_default()));
        match (resolve(&self.target), resolve(&other.target)) {
            (Some(a), Some(b)) => a == b,
            _ => self.target == other.target,
        }
    }

    /// The file that gets replaced: [`Output::path`] with symbolic links followed.
    pub fn target(&self) -> &Path {
        &self.target
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
    /// file into place. Refuses an output that is the dataset's own file.
    pub fn write(self, dataset: &Dataset, nn: &Neighbours) -> Result<()> {
        check_not_input(&self.target, &dataset.path)?;
        self.check_columns(dataset)?;
        let (schema, batches) = dataset.with_neighbours(nn)?;
        self.write_table(schema, &batches)
    }

    /// Writes the dataset's rows and columns plus the dedup's `dup_group` and `keep` (see
    /// [`Dataset::with_groups`]), then moves the file into place. Refuses the dataset's own file.
    pub fn write_groups(mut self, dataset: &Dataset, groups: &Groups) -> Result<()> {
        self.fill_groups(dataset, groups)?;
        self.commit()
    }

    /// [`Output::write_groups`] up to the rename: the complete file waits, under its temporary
    /// name, for [`Output::commit`] (so that several outputs of one run appear together).
    pub fn fill_groups(&mut self, dataset: &Dataset, groups: &Groups) -> Result<()> {
        check_not_input(&self.target, &dataset.path)?;
        self.check_columns(dataset)?;
        let (schema, batches) = dataset.with_groups(groups)?;
        self.fill(schema, &batches)
    }

    /// Writes the pairs of a threshold join (see [`pairs_table`]), refusing `input`'s own file,
    /// up to the rename ([`Output::commit`]).
    pub fn fill_pairs(&mut self, pairs: &Pairs, input: &Path) -> Result<()> {
        check_not_input(&self.target, input)?;
        let (schema, batches) = pairs_table(pairs)?;
        self.fill(schema, &batches)
    }

    /// Writes `batches` (all of `schema`) to the temporary file in the output's format, then
    /// moves it into place.
    pub fn write_table(mut self, schema: SchemaRef, batches: &[RecordBatch]) -> Result<()> {
        self.fill(schema, batches)?;
        self.commit()
    }

    /// Writes `batches` (all of `schema`) to the temporary file in the output's format and
    /// flushes it to disk; [`Output::commit`] moves it into place.
    pub fn fill(&mut self, schema: SchemaRef, batches: &[RecordBatch]) -> Result<()> {
        self.begin()?;
        let path = self.path.clone();
        let io_err = |source| Error::Io { action: "cannot write".into(), path: path.clone(), source };
        let temp = self.temp.as_mut().expect("created by begin");
        match self.format {
            Format::Parquet => {
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                super::write_parquet::write_parquet(temp.as_file_mut(), schema, batches, threads)
            }
            _ => write_jsonl(temp.as_file_mut(), batches),
        }
        .map_err(io_err)?;
        temp.as_file().sync_all().map_err(io_err)?;
        self.filled = true;
        Ok(())
    }

    /// Moves the file written by [`Output::fill`] into place.
    pub fn commit(self) -> Result<()> {
        let io_err = |source| Error::Io { action: "cannot write".into(), path: self.path.clone(), source };
        match (self.temp, self.filled) {
            (Some(temp), true) => temp.persist(&self.target).map(drop).map_err(|e| io_err(e.error)),
            _ => Err(Error::invalid("output", format!("{}: nothing was written to commit", self.path.display()))),
        }
    }
}

/// The pairs of a threshold join as a table of `i` (`int64`), `j` (`int64`) and `score`
/// (`float32`), one row per pair in the pairs' order.
pub fn pairs_table(pairs: &Pairs) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("i", DataType::Int64, false),
        Field::new("j", DataType::Int64, false),
        Field::new("score", DataType::Float32, false),
    ]));
    // Batches of a million pairs: row groups are cut from them without a second whole copy.
    let mut batches = Vec::new();
    for start in (0..pairs.len()).step_by(1 << 20) {
        let end = (start + (1 << 20)).min(pairs.len());
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(pairs.i[start..end].to_vec())),
            Arc::new(Int64Array::from(pairs.j[start..end].to_vec())),
            Arc::new(Float32Array::from(pairs.score[start..end].to_vec())),
        ];
        batches.push(RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::invalid("pairs table", e.to_string()))?);
    }
    Ok((schema, batches))
}

/// A failure to create a file for the output `path`: tempfile's errors name the temporary
/// file, but the user named the output (and an OS error's own text, "Permission denied (os
/// error 13)", says the rest).
fn cannot_write(path: &Path, e: std::io::Error) -> Error {
    let source = e.raw_os_error().map_or(e, std::io::Error::from_raw_os_error);
    Error::Io { action: "cannot write".into(), path: path.into(), source }
}

/// The directory a file at `path` lives in (`.` for a bare name).
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `dataset` with its neighbours to `path` (format by extension), atomically; refuses a
/// `path` that is the dataset's own file.
pub fn write_with_neighbours(dataset: &Dataset, nn: &Neighbours, path: &Path) -> Result<()> {
    Output::create(path)?.write(dataset, nn)
}

/// An encoder's error as an I/O error of the output file.
pub(super) fn other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Writes one value of every column of `dataset` as JSON (the first that is not null, else a
/// null: the writer picks its encoder by the column's type), so that a column the JSON writer
/// cannot encode (an unknown time zone, an unsupported type) is refused before the search
/// instead of after it.
fn check_json_encodable(dataset: &Dataset, output: &Path) -> Result<()> {
    for (c, field) in dataset.schema.fields().iter().enumerate() {
        let columns = || dataset.batches.iter().map(|b| b.column(c)).filter(|col| !col.is_empty());
        let first = columns().find_map(|col| (0..col.len()).find(|&i| col.is_valid(i)).map(|i| col.slice(i, 1)));
        let Some(value) = first.or_else(|| columns().next().map(|col| col.slice(0, 1))) else { continue };
        let field = Arc::new(field.as_ref().clone().with_nullable(true));
        let encoded = RecordBatch::try_new(Arc::new(Schema::new(vec![field.clone()])), vec![value]).map_err(other).and_then(|b| {
            let mut w = json_writer(Vec::new());
            w.write(&b).and_then(|()| w.finish()).map_err(other)
        });
        if let Err(e) = encoded {
            return Err(Error::invalid(
                "output",
                format!(
                    "column {:?} ({}) cannot be written to {} as JSON: {e}; write Parquet (.parquet) instead, or drop the column",
                    field.name(),
                    field.data_type(),
                    output.display()
                ),
            ));
        }
    }
    Ok(())
}

/// The JSON Lines writer every JSON output uses.
fn json_writer<W: Write>(sink: W) -> arrow_json::Writer<W, arrow_json::writer::LineDelimited> {
    arrow_json::WriterBuilder::new().with_explicit_nulls(true).build::<_, arrow_json::writer::LineDelimited>(sink)
}

/// One JSON object per line, null fields written as `null` (not dropped). arrow-json writes
/// non-finite floats (the ±inf of unfilled neighbour slots) as `null`, keeping every line valid
/// JSON; a unit test holds it to that.
fn write_jsonl(file: &mut std::fs::File, batches: &[RecordBatch]) -> std::io::Result<()> {
    let mut w = json_writer(BufWriter::new(file));
    for b in batches {
        w.write(b).map_err(other)?;
    }
    w.finish().map_err(other)?;
    w.into_inner().flush()
}

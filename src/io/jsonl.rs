//! JSON Lines input: one object per line. A first pass parses every line with `serde_json`,
//! validating the embedding field with line numbers in every message and feeding arrow-json's
//! schema inference; a second pass decodes the whole file into Arrow columns with that schema.

use super::dataset::Dataset;
use super::format::Format;
use super::json_keys::top_level_keys;
use crate::error::{Error, Result};
use arrow_json::reader::{infer_json_schema_from_iterator, ReaderBuilder};
use arrow_schema::{ArrowError, Schema};
use serde_json::Value;
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

/// Rows per decoded record batch.
const BATCH_ROWS: usize = 8192;

/// What the first pass collects.
struct Scan<'a> {
    path: &'a Path,
    column: &'a str,
    reader: BufReader<File>,
    line: usize,
    buf: Vec<u8>,
    values: Vec<f32>,
    /// Dimension and the line that fixed it.
    d: Option<(usize, usize)>,
    rows: usize,
    keys: Vec<String>,
    seen: HashSet<String>,
    /// The error that stopped the scan (the schema inference only sees a placeholder).
    error: Option<Error>,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Scan<'_> {
    fn at(&self, message: String) -> Error {
        Error::format(self.path, format!("line {}", self.line), message)
    }

    /// Reads the next non-blank line; `None` at the end of the file.
    fn next_line(&mut self) -> Result<Option<Value>> {
        loop {
            self.buf.clear();
            self.line += 1;
            let got =
                self.reader.read_until(b'\n', &mut self.buf).map_err(|source| Error::Io { action: "cannot read".into(), path: self.path.into(), source })?;
            if got == 0 {
                return Ok(None);
            }
            let text = std::str::from_utf8(&self.buf).map_err(|e| self.at(format!("not valid UTF-8 ({e})")))?;
            if text.trim().is_empty() {
                continue;
            }
            // A JSON array of objects is the likeliest wrong input; say so.
            let hint = if self.line == 1 && text.trim_start().starts_with('[') {
                "; this reader takes JSON Lines (one object per line), not a JSON array"
            } else {
                ""
            };
            let value: Value = serde_json::from_str(text).map_err(|e| self.at(format!("invalid JSON: {e}{hint}")))?;
            let Value::Object(map) = &value else {
                return Err(self.at(format!("expected a JSON object, found {}{hint}", kind(&value))));
            };
            if map.keys().any(|k| !self.seen.contains(k)) {
                for k in top_level_keys(text) {
                    if self.seen.insert(k.clone()) {
                        self.keys.push(k);
                    }
                }
            }
            self.take_embedding(&value)?;
            return Ok(Some(value));
        }
    }

    /// Validates this line's embedding and appends it to the matrix.
    fn take_embedding(&mut self, obj: &Value) -> Result<()> {
        let column = self.column;
        let items = match obj.get(column) {
            Some(Value::Array(items)) => items,
            Some(other) => return Err(self.at(format!("{column:?} is {}, expected an array of numbers", kind(other)))),
            None => {
                return Err(Error::MissingColumn {
                    path: self.path.into(),
                    location: format!("line {}", self.line),
                    column: column.into(),
                    available: obj.as_object().into_iter().flat_map(|m| m.keys()).cloned().collect(),
                })
            }
        };
        match self.d {
            None if items.is_empty() => return Err(self.at(format!("{column:?} is an empty array"))),
            None => self.d = Some((items.len(), self.line)),
            Some((d, first)) if items.len() != d => {
                return Err(self.at(format!("ragged rows: {column:?} has {} values, expected {d} (the dimension on line {first})", items.len())))
            }
            Some(_) => {}
        }
        for (j, item) in items.iter().enumerate() {
            let Some(x) = item.as_f64() else {
                return Err(self.at(format!("{column:?} component {j} is {}, expected a number", kind(item))));
            };
            let x32 = x as f32;
            if !x32.is_finite() {
                return Err(self.at(format!("{column:?} component {j} is {x}, which is not a finite 32-bit float")));
            }
            self.values.push(x32);
        }
        self.rows += 1;
        Ok(())
    }
}

impl Iterator for Scan<'_> {
    type Item = std::result::Result<Value, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.error.is_some() {
            return None;
        }
        match self.next_line() {
            Ok(v) => v.map(Ok),
            Err(e) => {
                self.error = Some(e);
                Some(Err(ArrowError::JsonError("stopped at an invalid line".into())))
            }
        }
    }
}

fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|source| Error::Io { action: "cannot read".into(), path: path.into(), source })
}

/// Reads a JSON Lines file, taking the embeddings from field `column`.
pub(crate) fn read(path: &Path, column: &str) -> Result<Dataset> {
    let mut scan = Scan {
        path,
        column,
        reader: BufReader::new(open(path)?),
        line: 0,
        buf: Vec::new(),
        values: Vec::new(),
        d: None,
        rows: 0,
        keys: Vec::new(),
        seen: HashSet::new(),
        error: None,
    };
    let inferred = infer_json_schema_from_iterator(&mut scan);
    if let Some(e) = scan.error.take() {
        return Err(e);
    }
    let inferred = inferred.map_err(|e| Error::format(path, "column types", e.to_string()))?;
    let Some((d, _)) = scan.d else {
        return Err(Error::Empty { what: path.display().to_string(), detail: "no JSON objects in the file".into() });
    };

    // Columns in the order their keys first appear in the file.
    let mut fields: Vec<_> = inferred.fields().iter().cloned().collect();
    fields.sort_by_key(|f| scan.keys.iter().position(|k| k == f.name()).unwrap_or(usize::MAX));
    let schema = Arc::new(Schema::new(fields));

    let reader = ReaderBuilder::new(schema.clone())
        .with_coerce_primitive(true)
        .with_batch_size(BATCH_ROWS)
        .build(BufReader::new(open(path)?))
        .map_err(|e| Error::format(path, "decoding columns", e.to_string()))?;
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| Error::format(path, "decoding columns", e.to_string()))?;
    let table_rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    if table_rows != scan.rows {
        return Err(Error::format(
            path,
            "decoding columns",
            format!("found {table_rows} records but {} lines with objects; write one object per line", scan.rows),
        ));
    }
    Ok(Dataset {
        path: path.into(),
        format: Format::Jsonl,
        column: column.into(),
        schema,
        batches,
        embeddings: std::mem::take(&mut scan.values),
        n: scan.rows,
        d,
    })
}

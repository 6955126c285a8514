//! JSON Lines input: one object per line. The file is read once (so a pipe or FIFO works),
//! a UTF-8 byte-order mark is skipped and CRLF or CR line ends are read as LF. A first pass
//! parses every line with `serde_json`, validating the embedding field and the other fields'
//! types with line numbers in every message and feeding arrow-json's schema inference; a second
//! pass decodes the text into Arrow columns with that schema.
//!
//! A column keeps its values exactly or the file is refused: a field that holds a number on one
//! line and a string on another, an integer beyond the int64 range, or integers beyond 2^53 in a
//! column that also holds fractional numbers (a float64 column would round them).

use super::dataset::Dataset;
use super::format::Format;
use super::json_keys::{top_level_keys, top_level_keys_at};
use super::json_types::{kind, FieldTypes};
use crate::error::{Error, Result};
use arrow_json::reader::{infer_json_schema_from_iterator, ReaderBuilder};
use arrow_schema::{ArrowError, Schema};
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

/// Rows per decoded record batch.
const BATCH_ROWS: usize = 8192;

/// What the first pass collects.
struct Scan<'a> {
    path: &'a Path,
    column: &'a str,
    lines: std::iter::Enumerate<std::str::Split<'a, char>>,
    line: usize,
    types: FieldTypes,
    values: Vec<f32>,
    /// Dimension and the line that fixed it.
    d: Option<(usize, usize)>,
    rows: usize,
    keys: Vec<String>,
    seen: HashSet<String>,
    /// The error that stopped the scan (the schema inference only sees a placeholder).
    error: Option<Error>,
}

impl Scan<'_> {
    fn at(&self, message: String) -> Error {
        Error::format(self.path, format!("line {}", self.line), message)
    }

    /// Reads the next non-blank line; `None` at the end of the file.
    fn next_line(&mut self) -> Result<Option<Value>> {
        loop {
            let Some((i, text)) = self.lines.next() else { return Ok(None) };
            self.line = i + 1;
            if text.trim().is_empty() {
                continue;
            }
            // A JSON array of objects is the likeliest wrong input; say so.
            let hint = if self.line == 1 && text.trim_start().starts_with('[') {
                "; this reader takes JSON Lines (one object per line), not a JSON array"
            } else {
                ""
            };
            let value: Value = serde_json::from_str(text).map_err(|e| {
                // Name the field the parser was in: the last key that starts before the error
                // (serde's column counts bytes from 1).
                let at = e.column().saturating_sub(1);
                let chars = text.get(..at).map_or(at, |t| t.chars().count()) + 1;
                if e.to_string().starts_with("trailing characters") {
                    // The object is whole; what follows it is not part of any field.
                    return self.at(format!("invalid JSON at character {chars}: more text after the object ends ({e}); JSON Lines holds one object per line"));
                }
                let field = top_level_keys_at(text).into_iter().rev().find(|(_, p)| *p < at).map(|(k, _)| format!(" in field {k:?}")).unwrap_or_default();
                self.at(format!("invalid JSON at character {chars}{field}: {e}{hint}"))
            })?;
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
            // serde_json keeps the last of repeated keys: a repeated field would silently lose a
            // value, so it is refused (the scan costs far less than the parse above).
            let keys = top_level_keys(text);
            if keys.len() != map.len() {
                let mut seen = std::collections::HashSet::new();
                if let Some(k) = keys.iter().find(|k| !seen.insert(k.as_str())) {
                    return Err(self.at(format!("the field {k:?} appears more than once in the object")));
                }
            }
            self.take_embedding(&value)?;
            let (line, column) = (self.line, self.column);
            self.types.check(line, text, map, column).map_err(|m| Error::format(self.path, format!("line {line}"), m))?;
            return Ok(Some(value));
        }
    }

    /// Validates this line's embedding and appends it to the matrix.
    fn take_embedding(&mut self, obj: &Value) -> Result<()> {
        let column = self.column;
        let items = match obj.get(column) {
            Some(Value::Array(items)) => items,
            Some(other) => return Err(self.at(format!("{column:?} is {}, expected an array of numbers", kind(other)))),
            // Earlier lines had it: this line alone lacks the field (its keys are not the columns).
            None if self.rows > 0 => {
                let keys: Vec<String> = obj.as_object().into_iter().flat_map(|m| m.keys()).map(|k| format!("{k:?}")).collect();
                let keys = if keys.is_empty() { "none".to_owned() } else { keys.join(", ") };
                return Err(self.at(format!("this line has no {column:?} field (earlier lines have one); its fields are: {keys}")));
            }
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
                return Err(self.at(format!("{column:?} component {j} is {x:e}, which overflows float32 (largest finite: {:e})", f32::MAX)));
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

/// The file's text, read once: a byte-order mark dropped, CRLF and CR line ends read as LF (in
/// place: the CR of a CRLF becomes a space, which JSON ignores), UTF-8 checked (naming the line
/// of a bad byte).
fn read_text(path: &Path) -> Result<String> {
    let mut bytes = std::fs::read(path).map_err(|source| Error::Io { action: "cannot read".into(), path: path.into(), source })?;
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
    }
    for i in 0..bytes.len() {
        if bytes[i] == b'\r' {
            bytes[i] = if bytes.get(i + 1) == Some(&b'\n') { b' ' } else { b'\n' };
        }
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count();
        Error::format(path, format!("line {line}"), format!("not valid UTF-8 ({})", e.utf8_error()))
    })
}

/// Reads a JSON Lines file, taking the embeddings from field `column`.
pub(crate) fn read(path: &Path, column: &str) -> Result<Dataset> {
    let text = read_text(path)?;
    let mut scan = Scan {
        path,
        column,
        lines: text.split('\n').enumerate(),
        line: 0,
        types: FieldTypes::default(),
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
        .with_batch_size(BATCH_ROWS)
        .build(std::io::Cursor::new(text.as_bytes()))
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
        embeddings: std::mem::take(&mut scan.values).into(),
        n: scan.rows,
        d,
    })
}

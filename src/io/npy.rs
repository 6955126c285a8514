//! NumPy `.npy` files (format versions 1, 2 and 3): a 2-D array of floats (float16, float32,
//! float64) or integers (1 to 8 bytes, signed or not), in either byte order and either memory
//! order (C or Fortran), becomes an `n × d` f32 matrix. As a table it is one column of lists of
//! the file's own element type, so that writing it out loses nothing. Anything else (other
//! dtypes, structured or object arrays, not 2-D) is refused with the header field that is
//! wrong, since a silently reinterpreted buffer would give wrong neighbours.

use super::dataset::{insert_view, Dataset};
use super::format::Format;
use crate::data::check_finite;
use crate::error::{Error, Result};
use arrow_array::{make_array, ArrayRef, GenericListArray, RecordBatch, RecordBatchOptions};
use arrow_buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow_data::ArrayData;
use arrow_schema::{DataType, Field, FieldRef, Schema};
use half::f16;
use std::path::Path;
use std::sync::Arc;

const MAGIC: &[u8] = b"\x93NUMPY";

/// The parsed header dictionary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    /// Element type, e.g. `<f4`.
    pub descr: String,
    /// True when the data is column-major.
    pub fortran_order: bool,
    /// Array shape.
    pub shape: Vec<u64>,
}

/// Splits a file into its header and data bytes.
pub(crate) fn split(bytes: &[u8], path: &Path) -> Result<(Header, usize)> {
    let bad = |msg: String| Error::format(path, "npy header", msg);
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("not a NumPy .npy file (the magic bytes \"\\x93NUMPY\" are missing)".into()));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len, start): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad("the file ends inside the header".into()));
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        _ => return Err(bad(format!("format version {major}.{minor} is not supported (only 1.x, 2.x and 3.x)"))),
    };
    let end = start
        .checked_add(len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| bad(format!("the header claims {len} bytes but the file has only {}", bytes.len() - start)))?;
    // Versions 1 and 2 store the header as latin-1; in practice it is ASCII. Version 3 is UTF-8.
    let text = std::str::from_utf8(&bytes[start..end]).map_err(|_| bad("the header is not text".into()))?;
    let header = parse_header(text).map_err(bad)?;
    Ok((header, end))
}

/// Parses the Python dict literal `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
pub(crate) fn parse_header(text: &str) -> std::result::Result<Header, String> {
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    p.expect(b'{')?;
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.ws();
        p.expect(b':')?;
        p.ws();
        match key.as_str() {
            "descr" => {
                if p.peek() == Some(b'[') {
                    return Err("structured dtypes (a list in 'descr') are not supported; expected one plain dtype: floats ('<f4', '<f8', '<f2') or integers ('<i1' to '<u8'), in either byte order".into());
                }
                descr = Some(p.string()?)
            }
            "fortran_order" => fortran = Some(p.boolean()?),
            "shape" => shape = Some(p.tuple()?),
            other => return Err(format!("unexpected key {other:?} in the header")),
        }
        p.ws();
        if !p.eat(b',') {
            p.ws();
            p.expect(b'}')?;
            break;
        }
    }
    Ok(Header {
        descr: descr.ok_or("the header has no 'descr'")?,
        fortran_order: fortran.ok_or("the header has no 'fortran_order'")?,
        shape: shape.ok_or("the header has no 'shape'")?,
    })
}

/// A cursor over the header text.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        self.i += usize::from(hit);
        hit
    }
    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("malformed header: expected '{}' at byte {}", c as char, self.i))
        }
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        let q = self.peek().filter(|&c| c == b'\'' || c == b'"').ok_or_else(|| format!("malformed header: expected a quoted string at byte {}", self.i))?;
        self.i += 1;
        let start = self.i;
        while self.peek().is_some_and(|c| c != q) {
            self.i += 1;
        }
        let s = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| "malformed header: bad text".to_owned())?;
        self.expect(q)?;
        Ok(s.to_owned())
    }
    fn boolean(&mut self) -> std::result::Result<bool, String> {
        for (word, v) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.s[self.i..].starts_with(word) {
                self.i += word.len();
                return Ok(v);
            }
        }
        Err(format!("malformed header: expected True or False at byte {}", self.i))
    }
    fn tuple(&mut self) -> std::result::Result<Vec<u64>, String> {
        self.expect(b'(')?;
        let mut out = Vec::new();
        loop {
            self.ws();
            if self.eat(b')') {
                return Ok(out);
            }
            let start = self.i;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
            let digits = std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default();
            out.push(digits.parse().map_err(|_| format!("malformed header: expected a dimension at byte {start}"))?);
            self.eat(b'L'); // Python 2 wrote longs as `3L`.
            self.ws();
            if !self.eat(b',') {
                self.ws();
                self.expect(b')')?;
                return Ok(out);
            }
        }
    }
}

/// Element types read: IEEE floats of 2, 4 or 8 bytes and integers of 1, 2, 4 or 8 bytes, in
/// either byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Dtype {
    /// `b'f'`, `b'i'` or `b'u'`.
    kind: u8,
    /// Bytes per element.
    size: usize,
    /// Stored big-endian.
    big: bool,
}

impl Dtype {
    fn parse(descr: &str) -> std::result::Result<Dtype, String> {
        let bad = || {
            format!(
                "dtype {descr:?} is not supported; expected floats ('<f4' float32, '<f8' float64, '<f2' float16) or integers ('<i1' to '<i8', '<u1' to '<u8'), in either byte order"
            )
        };
        let b = descr.as_bytes();
        let (Some(&order), Some(&kind), Some(size)) = (b.first(), b.get(1), descr.get(2..)) else { return Err(bad()) };
        let size: usize = size.parse().map_err(|_| bad())?;
        let fits = match kind {
            b'f' => matches!(size, 2 | 4 | 8),
            b'i' | b'u' => matches!(size, 1 | 2 | 4 | 8),
            _ => false,
        };
        let big = match order {
            b'<' => false,
            b'>' => true,
            // No byte order: single bytes.
            b'|' if size == 1 => false,
            _ => return Err(bad()),
        };
        if !fits {
            return Err(bad());
        }
        Ok(Dtype { kind, size, big })
    }

    /// The Arrow type of one element.
    fn arrow(self) -> DataType {
        match (self.kind, self.size) {
            (b'f', 2) => DataType::Float16,
            (b'f', 4) => DataType::Float32,
            (b'f', 8) => DataType::Float64,
            (b'i', 1) => DataType::Int8,
            (b'i', 2) => DataType::Int16,
            (b'i', 4) => DataType::Int32,
            (b'i', 8) => DataType::Int64,
            (b'u', 1) => DataType::UInt8,
            (b'u', 2) => DataType::UInt16,
            (b'u', 4) => DataType::UInt32,
            _ => DataType::UInt64,
        }
    }

    /// True for float32 (either byte order): the matrix holds the file's very values, so the
    /// table column can view it instead of holding a copy.
    fn is_matrix_type(self) -> bool {
        self.kind == b'f' && self.size == 4
    }

    /// One element, given its bytes in this machine's order, as f32 (and as f64 for float64).
    #[inline]
    fn value(self, e: &[u8]) -> (f32, Option<f64>) {
        macro_rules! int {
            ($t:ty) => {
                <$t>::from_ne_bytes(e.try_into().expect("one element")) as f32
            };
        }
        match (self.kind, self.size) {
            (b'f', 2) => (f16::from_ne_bytes([e[0], e[1]]).to_f32(), None),
            (b'f', 4) => (f32::from_ne_bytes([e[0], e[1], e[2], e[3]]), None),
            (b'f', 8) => {
                let v = f64::from_ne_bytes(e.try_into().expect("one element"));
                (v as f32, Some(v))
            }
            (b'i', 1) => (int!(i8), None),
            (b'i', 2) => (int!(i16), None),
            (b'i', 4) => (int!(i32), None),
            (b'i', 8) => (int!(i64), None),
            (b'u', 1) => (int!(u8), None),
            (b'u', 2) => (int!(u16), None),
            (b'u', 4) => (int!(u32), None),
            _ => (int!(u64), None),
        }
    }
}

/// The checked shape and element type of an array: 2-D, n ≥ 1, d ≥ 1, and the number of data
/// bytes that must follow the header.
fn layout(h: &Header, path: &Path) -> Result<(Dtype, usize, usize, usize)> {
    let bad = |msg: String| Error::format(path, "npy header", msg);
    let dtype = Dtype::parse(&h.descr).map_err(bad)?;
    let &[n, d] = h.shape.as_slice() else {
        return Err(bad(format!("shape {:?} is not 2-D; expected (rows, dimensions)", h.shape)));
    };
    let what = format!("{}", path.display());
    if n == 0 {
        return Err(Error::Empty { what, detail: format!("shape ({n}, {d}) has no rows") });
    }
    if d == 0 {
        return Err(Error::Empty { what, detail: format!("shape ({n}, {d}) has no dimensions") });
    }
    let (n, d) = (usize::try_from(n).map_err(|_| bad("too many rows".into()))?, usize::try_from(d).map_err(|_| bad("too many dimensions".into()))?);
    let need = n.checked_mul(d).and_then(|v| v.checked_mul(dtype.size));
    let need = need.ok_or_else(|| bad(format!("shape ({n}, {d}) of {} is more than can be addressed (truncated or corrupted)", h.descr)))?;
    Ok((dtype, n, d, need))
}

fn size_error(path: &Path, h: &Header, n: usize, d: usize, need: usize, have: &str) -> Error {
    Error::format(path, "npy data", format!("shape ({n}, {d}) of {} needs {need} bytes of data but the file holds {have} (truncated or corrupted)", h.descr))
}

/// Where a file's elements go in the row-major matrix: in file order (C order), or, for a
/// Fortran-ordered file (its columns one after another), element `p` to row `p mod n`,
/// component `p div n`.
#[derive(Clone, Copy)]
struct Layout {
    n: usize,
    d: usize,
    fortran: bool,
}

impl Layout {
    /// The row-major slot of the file's element `p`.
    #[inline]
    fn slot(self, p: usize) -> usize {
        if self.fortran {
            (p % self.n) * self.d + p / self.n
        } else {
            p
        }
    }
}

/// Converts the elements in `bytes` (whole elements of `dtype`, as stored; the first is the
/// file's element `first`) into `out` as f32 and, where given, into `raw` in this machine's byte
/// order, at their row-major slots (`out` and `raw` are appended to in C order, and hold the
/// whole matrix already in Fortran order). Records the first float64 that is finite but beyond
/// float32's range (its position in the file and its value).
fn convert(dtype: Dtype, bytes: &[u8], first: usize, at: Layout, out: &mut Vec<f32>, mut raw: Option<&mut Vec<u8>>, overflow: &mut Option<(usize, f64)>) {
    let swap = dtype.big != cfg!(target_endian = "big");
    if dtype.is_matrix_type() && !swap && !at.fortran {
        out.extend(bytes.chunks_exact(4).map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]])));
        return;
    }
    let size = dtype.size;
    let mut e = [0u8; 8];
    for (i, c) in bytes.chunks_exact(size).enumerate() {
        let el = &mut e[..size];
        el.copy_from_slice(c);
        if swap {
            el.reverse();
        }
        let (x, wide) = dtype.value(el);
        if let Some(v) = wide {
            if overflow.is_none() && v.is_finite() && !x.is_finite() {
                *overflow = Some((first + i, v));
            }
        }
        let slot = at.slot(first + i);
        if at.fortran {
            out[slot] = x;
        } else {
            out.push(x);
        }
        if let Some(r) = raw.as_deref_mut() {
            if at.fortran {
                r[slot * size..(slot + 1) * size].copy_from_slice(el);
            } else {
                r.extend_from_slice(el);
            }
        }
    }
}

/// The first float64 beyond float32's range is named as such (its position is in file order,
/// placed by `at`); then the finiteness check of the row-major matrix.
fn finish(m: &Matrix, overflow: Option<(usize, f64)>, at: Layout, path: &Path) -> Result<()> {
    if let Some((p, v)) = overflow {
        let slot = at.slot(p);
        let (row, component) = (slot / m.d, slot % m.d);
        return Err(Error::format(path, format!("row {row}, component {component}"), format!("{v:e} overflows float32 (largest finite: {:e})", f32::MAX)));
    }
    check_finite(&m.values, m.d, &path.display().to_string())
}

/// A matrix read from a file.
struct Matrix {
    /// Row-major `n × d` values as f32.
    values: Vec<f32>,
    n: usize,
    d: usize,
    /// The file's own elements in this machine's byte order, row-major, where they are not
    /// float32 and were asked for.
    raw: Option<(Dtype, Vec<u8>)>,
}

/// Decodes a whole `.npy` file held in memory into `(values, n, d)`, validated finite (the
/// reference the streaming reader is tested against).
#[cfg(test)]
pub(crate) fn decode(bytes: &[u8], path: &Path) -> Result<(Vec<f32>, usize, usize)> {
    let (h, data_start) = split(bytes, path)?;
    let (dtype, n, d, need) = layout(&h, path)?;
    let data = &bytes[data_start..];
    if need != data.len() {
        return Err(size_error(path, &h, n, d, need, &format!("{}", data.len())));
    }
    let at = Layout { n, d, fortran: h.fortran_order };
    let mut values = if at.fortran { vec![0.0; n * d] } else { Vec::with_capacity(n * d) };
    let mut overflow = None;
    convert(dtype, data, 0, at, &mut values, None, &mut overflow);
    let m = Matrix { values, n, d, raw: None };
    finish(&m, overflow, at, path)?;
    Ok((m.values, n, d))
}

/// The longest header read (numpy writes a few hundred bytes; version 2 allows 4 GiB).
const MAX_HEADER: usize = 1 << 20;
/// Bytes converted per read of the data.
const CHUNK: usize = 1 << 20;

/// Reads a `.npy` file into `(values, n, d)`: row-major, finite, n ≥ 1, d ≥ 1. The header is
/// read and checked against the file's size before any data is read, and the data is converted
/// as it streams in (each element to its row-major place), so memory holds the matrix once.
pub fn read_matrix(path: &Path) -> Result<(Vec<f32>, usize, usize)> {
    let m = read(path, false)?;
    Ok((m.values, m.n, m.d))
}

/// [`read_matrix`], keeping the file's own elements too where `keep` and they are not float32.
fn read(path: &Path, keep: bool) -> Result<Matrix> {
    use std::io::Read;
    let io = |source| Error::Io { action: "cannot read".into(), path: path.into(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
    // The magic, the version and the header's length, then the header itself.
    let mut head = vec![0u8; 12];
    let got = read_full(&mut file, &mut head).map_err(io)?;
    head.truncate(got);
    let (start, len) = match head.get(6) {
        Some(1) if got >= 10 => (10, u16::from_le_bytes([head[8], head[9]]) as usize),
        Some(2 | 3) if got >= 12 => (12, u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize),
        _ => return Err(split(&head, path).err().unwrap_or_else(|| Error::format(path, "npy header", "the file ends inside the header"))),
    };
    if len > MAX_HEADER {
        return Err(Error::format(path, "npy header", format!("the header claims {len} bytes (more than {MAX_HEADER}); the file is corrupted")));
    }
    let mut header = head;
    header.resize(start + len, 0);
    let more = read_full(&mut file, &mut header[got.min(start + len)..]).map_err(io)?;
    header.truncate(got.min(start + len) + more);
    let (h, data_start) = split(&header, path)?;
    let (dtype, n, d, need) = layout(&h, path)?;
    if got > data_start {
        return Err(Error::format(path, "npy header", "the header is shorter than its own prefix; the file is corrupted"));
    }
    if let Some(size) = size {
        let have = size.saturating_sub(data_start as u64);
        if have != need as u64 {
            return Err(size_error(path, &h, n, d, need, &have.to_string()));
        }
    }
    let oom = |bytes: usize| Error::OutOfMemory { device: "cpu".into(), context: format!("reading {} ({n} × {d})", path.display()), needed_bytes: bytes };
    let at = Layout { n, d, fortran: h.fortran_order };
    let mut values = Vec::new();
    values.try_reserve_exact(n * d).map_err(|_| oom(n.saturating_mul(d).saturating_mul(4)))?;
    let mut raw = None;
    if keep && !dtype.is_matrix_type() {
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(need).map_err(|_| oom(need))?;
        raw = Some(bytes);
    }
    if at.fortran {
        // Elements arrive column by column: every slot exists before the first one is filled.
        values.resize(n * d, 0.0);
        if let Some(r) = raw.as_mut() {
            r.resize(need, 0);
        }
    }
    let mut overflow = None;
    let mut buf = vec![0u8; CHUNK - CHUNK % dtype.size];
    let mut left = need;
    while left > 0 {
        let want = buf.len().min(left);
        let got = read_full(&mut file, &mut buf[..want]).map_err(io)?;
        if got < want {
            return Err(size_error(path, &h, n, d, need, &(need - left + got).to_string()));
        }
        convert(dtype, &buf[..got], (need - left) / dtype.size, at, &mut values, raw.as_mut(), &mut overflow);
        left -= got;
    }
    if size.is_none() && file.read(&mut [0u8]).map_err(io)? != 0 {
        return Err(size_error(path, &h, n, d, need, "more"));
    }
    let m = Matrix { values, n, d, raw: raw.map(|r| (dtype, r)) };
    finish(&m, overflow, at, path)?;
    Ok(m)
}

/// Reads until `buf` is full or the input ends; the number of bytes read.
fn read_full(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut at = 0;
    while at < buf.len() {
        match r.read(&mut buf[at..]) {
            Ok(0) => break,
            Ok(k) => at += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(at)
}

/// Reads a `.npy` file as a [`Dataset`] whose table has one column, named `column`, of lists
/// of the file's element type, in record batches of at most 8192 rows. For float32 files the
/// column views the matrix (no copy); otherwise it holds the file's own values, so that the
/// output keeps them exactly.
pub(crate) fn read_dataset(path: &Path, column: &str) -> Result<Dataset> {
    let m = read(path, true)?;
    let (n, d) = (m.n, m.d);
    let embeddings = ScalarBuffer::from(m.values);
    // Arrow lists address their values with i32 offsets.
    let per_batch = (i32::MAX as usize / d).clamp(1, 8192);
    let starts = (0..n).step_by(per_batch).map(|r0| (r0, per_batch.min(n - r0)));
    let table = |e: arrow_schema::ArrowError| Error::invalid("npy table", e.to_string());
    let (schema, batches) = match m.raw {
        None => {
            let item = Arc::new(Field::new("item", DataType::Float32, false));
            let field: FieldRef = Arc::new(Field::new(column, DataType::List(item), false));
            let schema = Arc::new(Schema::new(vec![field.clone()]));
            let empty: Vec<RecordBatch> = starts
                .map(|(_, rows)| RecordBatch::try_new_with_options(Arc::new(Schema::empty()), vec![], &RecordBatchOptions::new().with_row_count(Some(rows))))
                .collect::<std::result::Result<_, _>>()
                .map_err(table)?;
            let batches = insert_view(empty, &schema, 0, &field, &embeddings, d)?;
            (schema, batches)
        }
        Some((dtype, raw)) => {
            let item = Arc::new(Field::new("item", dtype.arrow(), false));
            let schema = Arc::new(Schema::new(vec![Field::new(column, DataType::List(item.clone()), false)]));
            let data = ArrayData::builder(dtype.arrow()).len(n * d).add_buffer(Buffer::from_vec(raw)).align_buffers(true).build().map_err(table)?;
            let child: ArrayRef = make_array(data);
            let batches = starts
                .map(|(r0, rows)| {
                    let offsets = OffsetBuffer::<i32>::from_lengths(std::iter::repeat_n(d, rows));
                    let list = GenericListArray::<i32>::try_new(item.clone(), offsets, child.slice(r0 * d, rows * d), None).map_err(table)?;
                    RecordBatch::try_new(schema.clone(), vec![Arc::new(list)]).map_err(table)
                })
                .collect::<Result<Vec<_>>>()?;
            (schema, batches)
        }
    };
    Ok(Dataset { path: path.into(), format: Format::Npy, column: column.into(), schema, batches, embeddings, n, d })
}

/// A `.npy` file of format `version` with header dictionary `header` and raw `data`, as numpy
/// writes it: magic, version, length, header padded to a multiple of 64 (tests).
#[cfg(test)]
pub(crate) fn test_file(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
    let prefix = if version == 1 { 10 } else { 12 };
    let mut h = header.to_owned();
    while !(prefix + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend([version, 0]);
    if version == 1 {
        out.extend((h.len() as u16).to_le_bytes());
    } else {
        out.extend((h.len() as u32).to_le_bytes());
    }
    out.extend(h.as_bytes());
    out.extend(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f4(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    const P: &str = "t.npy";

    #[test]
    fn header_forms() {
        let h = parse_header("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }").unwrap();
        assert_eq!(h, Header { descr: "<f4".into(), fortran_order: false, shape: vec![3, 4] });
        let h = parse_header("{\"shape\":(7L,2L),\"fortran_order\":True,\"descr\":\"<f8\"}").unwrap();
        assert_eq!((h.shape, h.fortran_order, h.descr.as_str()), (vec![7, 2], true, "<f8"));
        assert_eq!(parse_header("{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }").unwrap().shape, vec![5]);
        assert_eq!(parse_header("{'descr': '<f4', 'fortran_order': False, 'shape': (), }").unwrap().shape, Vec::<u64>::new());
        assert!(parse_header("{'descr': '<f4', 'shape': (3, 4)}").unwrap_err().contains("fortran_order"));
        assert!(parse_header("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,)}").unwrap_err().contains("structured"));
        assert!(parse_header("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (3,)}").is_err());
        assert!(parse_header("{'descr': '<f4'").is_err());
    }

    #[test]
    fn decodes_every_version_and_dtype() {
        let v = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        for version in [1, 2, 3] {
            let b = test_file(version, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", &f4(&v));
            assert_eq!(decode(&b, Path::new(P)).unwrap(), (v.to_vec(), 2, 3));
        }
        let f8: Vec<u8> = v.iter().flat_map(|&x| f64::from(x).to_le_bytes()).collect();
        let b = test_file(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }", &f8);
        assert_eq!(decode(&b, Path::new(P)).unwrap(), (v.to_vec(), 3, 2));
        let f2: Vec<u8> = v.iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect();
        let b = test_file(1, "{'descr': '<f2', 'fortran_order': False, 'shape': (6, 1), }", &f2);
        assert_eq!(decode(&b, Path::new(P)).unwrap(), (v.to_vec(), 6, 1));
        // Big-endian floats and integers of every width, signed or not.
        let be: Vec<u8> = v.iter().flat_map(|&x| f64::from(x).to_be_bytes()).collect();
        let b = test_file(1, "{'descr': '>f8', 'fortran_order': False, 'shape': (2, 3), }", &be);
        assert_eq!(decode(&b, Path::new(P)).unwrap(), (v.to_vec(), 2, 3));
        let be4: Vec<u8> = v.iter().flat_map(|&x| x.to_be_bytes()).collect();
        let b = test_file(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", &be4);
        assert_eq!(decode(&b, Path::new(P)).unwrap(), (v.to_vec(), 2, 3));
        let ints = [-3i64, 0, 7, 100, -128, 127];
        let as_f32: Vec<f32> = ints.iter().map(|&i| i as f32).collect();
        for (descr, bytes) in [
            ("|i1", ints.iter().flat_map(|&i| (i as i8).to_le_bytes()).collect::<Vec<u8>>()),
            ("<i2", ints.iter().flat_map(|&i| (i as i16).to_le_bytes()).collect()),
            (">i4", ints.iter().flat_map(|&i| (i as i32).to_be_bytes()).collect()),
            ("<i8", ints.iter().flat_map(|&i| i.to_le_bytes()).collect()),
        ] {
            let b = test_file(1, &format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (3, 2), }}"), &bytes);
            assert_eq!(decode(&b, Path::new(P)).unwrap(), (as_f32.clone(), 3, 2), "{descr}");
        }
        let big = [0u64, 1, u64::MAX];
        let b = test_file(1, "{'descr': '<u8', 'fortran_order': False, 'shape': (3, 1), }", &big.iter().flat_map(|u| u.to_le_bytes()).collect::<Vec<u8>>());
        assert_eq!(decode(&b, Path::new(P)).unwrap().0, [0.0, 1.0, u64::MAX as f32]);
        // Fortran order: the file holds the columns one after another; rows come out whole.
        let cols = [1.0f32, 3.0, 5.0, 2.0, 4.0, 6.0];
        let b = test_file(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (3, 2), }", &f4(&cols));
        assert_eq!(decode(&b, Path::new(P)).unwrap(), (v.to_vec(), 3, 2));
        let tall: Vec<f32> = (0..130 * 3).map(|i| i as f32).collect();
        let b = test_file(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (130, 3), }", &f4(&tall));
        let (rows, n, d) = decode(&b, Path::new(P)).unwrap();
        assert_eq!((n, d), (130, 3));
        for i in 0..130 {
            assert_eq!(rows[i * 3..i * 3 + 3], [i as f32, (130 + i) as f32, (260 + i) as f32], "row {i}");
        }
    }

    /// The streaming reader (chunks of 1 MiB) gives what the whole-file decoder gives, for
    /// every dtype, byte order and memory order, also past the first chunk.
    #[test]
    fn streaming_reader_equals_the_decoder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.npy");
        // 300 × 500 float64 values (1.2 MB: two chunks), column by column.
        let (n, d) = (300usize, 500usize);
        let value = |i: usize, j: usize| (i as f64) * 1000.0 + j as f64 + 0.25;
        let mut cols = Vec::new();
        for j in 0..d {
            for i in 0..n {
                cols.extend(value(i, j).to_be_bytes());
            }
        }
        let cases: Vec<(String, Vec<u8>)> = vec![
            (format!("{{'descr': '>f8', 'fortran_order': True, 'shape': ({n}, {d}), }}"), cols.clone()),
            (format!("{{'descr': '<f4', 'fortran_order': True, 'shape': ({n}, {d}), }}"), (0..n * d).flat_map(|p| (p as f32).to_le_bytes()).collect()),
            (format!("{{'descr': '>f4', 'fortran_order': False, 'shape': ({n}, {d}), }}"), (0..n * d).flat_map(|p| (p as f32).to_be_bytes()).collect()),
            (format!("{{'descr': '<i2', 'fortran_order': True, 'shape': ({n}, {d}), }}"), (0..n * d).flat_map(|p| (p as i16).to_le_bytes()).collect()),
        ];
        for (header, data) in cases {
            let bytes = test_file(1, &header, &data);
            std::fs::write(&path, &bytes).unwrap();
            let streamed = read_matrix(&path).unwrap();
            assert_eq!(streamed, decode(&bytes, Path::new(P)).unwrap(), "{header}");
            if header.contains(">f8") {
                assert_eq!(streamed.0[7 * d + 499], value(7, 499) as f32);
            }
        }
        // A float64 beyond float32's range in the second chunk is named by row and component.
        let mut wide = cols;
        let p = 140_000; // file position in the second chunk: row 140000 % 300, component 140000 / 300
        wide[p * 8..p * 8 + 8].copy_from_slice(&1e300f64.to_be_bytes());
        std::fs::write(&path, test_file(1, &format!("{{'descr': '>f8', 'fortran_order': True, 'shape': ({n}, {d}), }}"), &wide)).unwrap();
        let e = read_matrix(&path).unwrap_err().to_string();
        assert!(e.contains(&format!("row {}, component {}", p % n, p / n)), "{e}");
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let err = |b: &[u8]| decode(b, Path::new(P)).unwrap_err().to_string();
        let data = f4(&[1.0, 2.0, 3.0, 4.0]);
        for descr in ["<c8", "|b1", "<U1", "|O", "<i3", "<f16", "|i2", "f4", "<", ""] {
            let e = err(&test_file(1, &format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (2, 2), }}"), &data));
            assert!(e.contains("not supported") && e.contains(&format!("{descr:?}")), "{descr}: {e}");
        }
        // A float64 beyond float32's range is named where it lies, in C and in Fortran order.
        let wide: Vec<u8> = [1.0f64, 2.0, 1e300, 4.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert!(err(&test_file(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", &wide)).contains("row 1, component 0"));
        assert!(err(&test_file(1, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2), }", &wide)).contains("row 0, component 1"));
        assert!(err(&test_file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", &data)).contains("2-D"));
        assert!(err(&test_file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 1), }", &data)).contains("2-D"));
        assert!(err(&test_file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 2), }", &[])).contains("empty"));
        assert!(err(&test_file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 0), }", &[])).contains("empty"));
        let e = err(&test_file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", &data));
        assert!(e.contains("truncated") && e.contains("24 bytes"), "{e}");
        let huge = "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551615, 4), }";
        assert!(err(&test_file(1, huge, &data)).contains("truncated"));
        assert!(err(b"garbage, not numpy at all").contains("magic"));
        assert!(err(b"\x93NUMPY").contains("magic"));
        let mut cut = test_file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", &data);
        cut.truncate(30);
        assert!(err(&cut).contains("header"));
        let mut v9 = test_file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", &data);
        v9[6] = 9;
        assert!(err(&v9).contains("version 9"));
        let nan = test_file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", &f4(&[1.0, 2.0, 3.0, f32::NAN]));
        assert!(err(&nan).contains("row 1, component 1 is NaN"));
    }
}

//! NumPy `.npy` files (format versions 1, 2 and 3): a 2-D, C-ordered, little-endian float array
//! (`<f4`, `<f8` or `<f2`) becomes an `n × d` f32 matrix. Anything else is refused with the
//! header field that is wrong, since a silently reinterpreted buffer would give wrong neighbours.

use super::dataset::{insert_view, Dataset};
use super::format::Format;
use crate::data::check_finite;
use crate::error::{Error, Result};
use arrow_array::{RecordBatch, RecordBatchOptions};
use arrow_buffer::ScalarBuffer;
use arrow_schema::{DataType, Field, Schema};
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
                    return Err("structured dtypes (a list in 'descr') are not supported; expected '<f4', '<f8' or '<f2'".into());
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

/// Element types read, with their size in bytes.
#[derive(Clone, Copy)]
enum Dtype {
    F2,
    F4,
    F8,
}

impl Dtype {
    fn parse(descr: &str) -> std::result::Result<Dtype, String> {
        match descr {
            "<f4" => Ok(Dtype::F4),
            "<f8" => Ok(Dtype::F8),
            "<f2" => Ok(Dtype::F2),
            other => Err(format!("dtype {other:?} is not supported; expected little-endian floats: '<f4' (float32), '<f8' (float64) or '<f2' (float16)")),
        }
    }
    fn size(self) -> usize {
        match self {
            Dtype::F2 => 2,
            Dtype::F4 => 4,
            Dtype::F8 => 8,
        }
    }
}

/// The checked shape and element type of an array: 2-D, C order, n ≥ 1, d ≥ 1, and the
/// number of data bytes that must follow the header.
fn layout(h: &Header, path: &Path) -> Result<(Dtype, usize, usize, usize)> {
    let bad = |msg: String| Error::format(path, "npy header", msg);
    let dtype = Dtype::parse(&h.descr).map_err(bad)?;
    if h.fortran_order {
        return Err(bad("the array is in Fortran (column-major) order; save it C-ordered (np.ascontiguousarray)".into()));
    }
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
    let need = n.checked_mul(d).and_then(|v| v.checked_mul(dtype.size()));
    let need = need.ok_or_else(|| bad(format!("shape ({n}, {d}) of {} is more than can be addressed (truncated or corrupted)", h.descr)))?;
    Ok((dtype, n, d, need))
}

fn size_error(path: &Path, h: &Header, n: usize, d: usize, need: usize, have: &str) -> Error {
    Error::format(path, "npy data", format!("shape ({n}, {d}) of {} needs {need} bytes of data but the file holds {have} (truncated or corrupted)", h.descr))
}

/// Appends the values in `bytes` (whole elements of `dtype`) to `out`, recording the first
/// float64 that is finite but beyond float32's range (its flat position and value).
fn convert(dtype: Dtype, bytes: &[u8], out: &mut Vec<f32>, overflow: &mut Option<(usize, f64)>) {
    match dtype {
        Dtype::F4 => out.extend(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        Dtype::F2 => out.extend(bytes.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())),
        Dtype::F8 => {
            for c in bytes.chunks_exact(8) {
                let v = f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                let x = v as f32;
                if overflow.is_none() && v.is_finite() && !x.is_finite() {
                    *overflow = Some((out.len(), v));
                }
                out.push(x);
            }
        }
    }
}

/// The finiteness check, after a float64 that overflowed float32 is named as such.
fn finish(values: Vec<f32>, n: usize, d: usize, overflow: Option<(usize, f64)>, path: &Path) -> Result<(Vec<f32>, usize, usize)> {
    if let Some((at, v)) = overflow {
        return Err(Error::format(path, format!("row {}, component {}", at / d, at % d), format!("{v:e} overflows float32 (largest finite: {:e})", f32::MAX)));
    }
    check_finite(&values, d, &path.display().to_string())?;
    Ok((values, n, d))
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
    let mut values = Vec::with_capacity(n * d);
    let mut overflow = None;
    convert(dtype, data, &mut values, &mut overflow);
    finish(values, n, d, overflow, path)
}

/// The longest header read (numpy writes a few hundred bytes; version 2 allows 4 GiB).
const MAX_HEADER: usize = 1 << 20;
/// Bytes converted per read of the data.
const CHUNK: usize = 1 << 20;

/// Reads a `.npy` file into `(values, n, d)`: row-major, finite, n ≥ 1, d ≥ 1. The header is
/// read and checked against the file's size before any data is read, and the data is converted
/// as it streams in, so memory holds the matrix once.
pub fn read_matrix(path: &Path) -> Result<(Vec<f32>, usize, usize)> {
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
    let mut values = Vec::new();
    values.try_reserve_exact(n * d).map_err(|_| Error::OutOfMemory {
        device: "cpu".into(),
        context: format!("reading {} ({n} × {d})", path.display()),
        needed_bytes: n.saturating_mul(d).saturating_mul(4),
    })?;
    let mut overflow = None;
    let mut buf = vec![0u8; CHUNK - CHUNK % dtype.size()];
    let mut left = need;
    while left > 0 {
        let want = buf.len().min(left);
        let got = read_full(&mut file, &mut buf[..want]).map_err(io)?;
        if got < want {
            return Err(size_error(path, &h, n, d, need, &(need - left + got).to_string()));
        }
        convert(dtype, &buf[..got], &mut values, &mut overflow);
        left -= got;
    }
    if size.is_none() && file.read(&mut [0u8]).map_err(io)? != 0 {
        return Err(size_error(path, &h, n, d, need, "more"));
    }
    finish(values, n, d, overflow, path)
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

/// Reads a `.npy` file as a [`Dataset`] whose table has one column, `embedding`
/// (`list<float32>`), in record batches of at most 8192 rows that view the matrix (no copy).
pub(crate) fn read_dataset(path: &Path) -> Result<Dataset> {
    let (values, n, d) = read_matrix(path)?;
    let embeddings = ScalarBuffer::from(values);
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let field = Arc::new(Field::new("embedding", DataType::List(item), false));
    let schema = Arc::new(Schema::new(vec![field.clone()]));
    // Arrow lists address their values with i32 offsets.
    let per_batch = (i32::MAX as usize / d).clamp(1, 8192);
    let empty: Vec<RecordBatch> = (0..n)
        .step_by(per_batch)
        .map(|r0| RecordBatch::try_new_with_options(Arc::new(Schema::empty()), vec![], &RecordBatchOptions::new().with_row_count(Some(per_batch.min(n - r0)))))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::invalid("npy table", e.to_string()))?;
    let batches = insert_view(empty, &schema, 0, &field, &embeddings, d)?;
    Ok(Dataset { path: path.into(), format: Format::Npy, column: "embedding".into(), schema, batches, embeddings, n, d })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file as numpy writes it: magic, version, length, header padded to a multiple of 64.
    fn npy(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
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
            let b = npy(version, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", &f4(&v));
            assert_eq!(decode(&b, Path::new(P)).unwrap(), (v.to_vec(), 2, 3));
        }
        let f8: Vec<u8> = v.iter().flat_map(|&x| f64::from(x).to_le_bytes()).collect();
        let b = npy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }", &f8);
        assert_eq!(decode(&b, Path::new(P)).unwrap(), (v.to_vec(), 3, 2));
        let f2: Vec<u8> = v.iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect();
        let b = npy(1, "{'descr': '<f2', 'fortran_order': False, 'shape': (6, 1), }", &f2);
        assert_eq!(decode(&b, Path::new(P)).unwrap(), (v.to_vec(), 6, 1));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let err = |b: &[u8]| decode(b, Path::new(P)).unwrap_err().to_string();
        let data = f4(&[1.0, 2.0, 3.0, 4.0]);
        let e = err(&npy(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }", &data));
        assert!(e.contains("'>f4'") || e.contains("\">f4\""), "{e}");
        assert!(err(&npy(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }", &data)).contains("not supported"));
        assert!(err(&npy(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", &data)).contains("Fortran"));
        assert!(err(&npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", &data)).contains("2-D"));
        assert!(err(&npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 1), }", &data)).contains("2-D"));
        assert!(err(&npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 2), }", &[])).contains("empty"));
        assert!(err(&npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 0), }", &[])).contains("empty"));
        let e = err(&npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", &data));
        assert!(e.contains("truncated") && e.contains("24 bytes"), "{e}");
        let huge = "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551615, 4), }";
        assert!(err(&npy(1, huge, &data)).contains("truncated"));
        assert!(err(b"garbage, not numpy at all").contains("magic"));
        assert!(err(b"\x93NUMPY").contains("magic"));
        let mut cut = npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", &data);
        cut.truncate(30);
        assert!(err(&cut).contains("header"));
        let mut v9 = npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", &data);
        v9[6] = 9;
        assert!(err(&v9).contains("version 9"));
        let nan = npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", &f4(&[1.0, 2.0, 3.0, f32::NAN]));
        assert!(err(&nan).contains("row 1, component 1 is NaN"));
    }
}

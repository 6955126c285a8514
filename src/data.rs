//! Borrowed views of row-major embedding matrices, their validation, and the f16/bf16 widening.

use crate::error::{Error, Result};
use half::{bf16, f16};
use std::borrow::Cow;

/// An element type the step accepts: f32 as it is, f16 and bf16 widened to f32 on the CPU.
pub trait Element: Copy + Send + Sync + 'static {
    /// Name used in messages.
    const NAME: &'static str;
    /// Widen to f32.
    fn to_f32(self) -> f32;
    /// Borrow as f32 when the type already is f32 (no copy).
    fn as_f32_slice(data: &[Self]) -> Option<&[f32]>;
}

impl Element for f32 {
    const NAME: &'static str = "f32";
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
    fn as_f32_slice(data: &[Self]) -> Option<&[f32]> {
        Some(data)
    }
}

impl Element for f16 {
    const NAME: &'static str = "f16";
    #[inline]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn as_f32_slice(_: &[Self]) -> Option<&[f32]> {
        None
    }
}

impl Element for bf16 {
    const NAME: &'static str = "bf16";
    #[inline]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn as_f32_slice(_: &[Self]) -> Option<&[f32]> {
        None
    }
}

/// Borrows f32 data as it is, or widens f16/bf16 into a new buffer.
pub fn widen<T: Element>(data: &[T]) -> Cow<'_, [f32]> {
    match T::as_f32_slice(data) {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(data.iter().map(|v| v.to_f32()).collect()),
    }
}

/// A validated, borrowed, row-major `n × d` matrix of finite f32 values.
#[derive(Debug, Clone, Copy)]
pub struct Vectors<'a> {
    data: &'a [f32],
    n: usize,
    d: usize,
}

impl<'a> Vectors<'a> {
    /// Checks shape (non-empty, length a multiple of `d`) and that every value is finite.
    /// `what` names the input in errors ("embeddings", "queries").
    pub fn new(data: &'a [f32], d: usize, what: &str) -> Result<Self> {
        let v = Self::shaped(data, d, what)?;
        check_finite(data, d, what)?;
        Ok(v)
    }

    /// Like [`Vectors::new`] but without the finiteness scan, for data already checked.
    pub(crate) fn shaped(data: &'a [f32], d: usize, what: &str) -> Result<Self> {
        if d == 0 {
            return Err(Error::Empty { what: what.into(), detail: "dimension d is 0".into() });
        }
        if data.is_empty() {
            return Err(Error::Empty { what: what.into(), detail: "no rows".into() });
        }
        if !data.len().is_multiple_of(d) {
            return Err(Error::Shape { what: what.into(), len: data.len(), d });
        }
        Ok(Vectors { data, n: data.len() / d, d })
    }

    /// A view of data already validated (by [`Vectors::new`]) with this dimension.
    pub(crate) fn shaped_unchecked(data: &'a [f32], d: usize) -> Self {
        Vectors { data, n: data.len() / d.max(1), d }
    }

    /// Number of rows.
    #[inline]
    pub fn n(&self) -> usize {
        self.n
    }

    /// Dimension.
    #[inline]
    pub fn d(&self) -> usize {
        self.d
    }

    /// The whole buffer.
    #[inline]
    pub fn as_slice(&self) -> &'a [f32] {
        self.data
    }

    /// Row `i`.
    #[inline]
    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.data[i * self.d..(i + 1) * self.d]
    }

    /// Rows `start..end` as a view.
    pub fn rows(&self, start: usize, end: usize) -> Vectors<'a> {
        Vectors { data: &self.data[start * self.d..end * self.d], n: end - start, d: self.d }
    }
}

/// Fails on the first NaN or infinity, naming its row and component.
pub fn check_finite(data: &[f32], d: usize, what: &str) -> Result<()> {
    // Chunks are tested without an early exit inside them, so the test runs as wide vector
    // compares at memory speed; only a failing chunk is searched for the value's position.
    for (ci, chunk) in data.chunks(4096).enumerate() {
        if chunk.iter().fold(true, |ok, v| ok & v.is_finite()) {
            continue;
        }
        let pos = chunk.iter().position(|v| !v.is_finite()).expect("a non-finite value is in this chunk");
        let flat = ci * 4096 + pos;
        return Err(Error::NonFinite { what: what.into(), row: flat / d, col: flat % d, value: data[flat] });
    }
    Ok(())
}

/// Builds one row-major buffer from rows of possibly different lengths, failing on the first
/// ragged row (named by its number) and on empty input.
pub fn flatten_rows<R: AsRef<[f32]>>(rows: &[R], what: &str) -> Result<(Vec<f32>, usize)> {
    let first = rows.first().ok_or_else(|| Error::Empty { what: what.into(), detail: "no rows".into() })?;
    let d = first.as_ref().len();
    if d == 0 {
        return Err(Error::Empty { what: what.into(), detail: "row 0 has no values".into() });
    }
    let mut out = Vec::with_capacity(rows.len() * d);
    for (i, r) in rows.iter().enumerate() {
        let r = r.as_ref();
        if r.len() != d {
            return Err(Error::Ragged { what: what.into(), row: i, len: r.len(), expected: d });
        }
        out.extend_from_slice(r);
    }
    Ok((out, d))
}

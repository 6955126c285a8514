//! One product tile: `C = A · Bᵀ` for a block of query rows against a block of database rows,
//! from packed panels, blocked over depth so the B micro-panel in use stays in L1.

use super::bf16::{self, Bf16Kernel};
use super::int8::{self, Int8Kernel, Scales};
use super::microkernel::{MicroKernel, MR, NR};

/// Depth of one pass: a B micro-panel of `KC_MAX × NR` f32 is 24 KiB, inside a 32 KiB L1. The
/// two-panel kernels read two (48 KiB, the L1 of a Zen 5, where blocks of 192 or 128 were not
/// faster; not measured on CPUs with a 32 KiB L1 and AVX-512, such as Zen 4).
const KC_MAX: usize = 384;

/// Computes the `a_rows × b_rows` products (padded to whole panels) into `c` (row stride `ldc`
/// ≥ `b_rows` rounded up to `NR`). `a` holds `ceil(a_rows/MR)` panels of `d × MR`, `b` holds
/// `ceil(b_rows/NR)` panels of `d × NR` (see the `pack` module's `pack_panels` with full depth).
pub fn product(kernel: MicroKernel, d: usize, a: &[f32], a_rows: usize, b: &[f32], b_rows: usize, c: &mut [f32], ldc: usize) {
    let shape = Blocked { depth: d, max_depth: KC_MAX, a_panels: a_rows.div_ceil(MR), b_panels: b_rows.div_ceil(NR), pairs: kernel.pairs() };
    shape.visit(a, b, c, ldc, |kc, as_, b0, b1, out, accumulate| match b1 {
        Some(b1) => kernel.run2(kc, as_, b0, b1, out, ldc, accumulate),
        None => kernel.run(kc, as_, b0, out, ldc, accumulate),
    });
}

/// Depth pairs of one pass of the bf16 product: a B micro-panel of `KQ_MAX × NR` words is 24 KiB.
const KQ_MAX: usize = 384;

/// [`product`] for bf16 pair panels (`super::bf16`): `a` holds `ceil(a_rows/MR)` panels of
/// `pairs(d) × MR` words, `b` holds `ceil(b_rows/NR)` panels of `pairs(d) × NR` words.
#[allow(clippy::too_many_arguments)]
pub fn product_bf16(kernel: Bf16Kernel, d: usize, a: &[u32], a_rows: usize, b: &[u32], b_rows: usize, c: &mut [f32], ldc: usize) {
    let shape = Blocked { depth: bf16::pairs(d), max_depth: KQ_MAX, a_panels: a_rows.div_ceil(MR), b_panels: b_rows.div_ceil(NR), pairs: true };
    shape.visit(a, b, c, ldc, |kq, as_, b0, b1, out, accumulate| match b1 {
        Some(b1) => kernel.run2(kq, as_, b0, b1, out, ldc, accumulate),
        None => kernel.run(kq, as_, b0, out, ldc, accumulate),
    });
}

/// A product blocked over depth: equal depth blocks of at most `max_depth` words (no short tail
/// block), and in each every (row panel, column panel) once, column panels two at a time where
/// the kernel has a two-panel form (`pairs`, see [`panel_pairs`]), else column panel by column
/// panel with the row panels inside.
struct Blocked {
    depth: usize,
    max_depth: usize,
    a_panels: usize,
    b_panels: usize,
    pairs: bool,
}

impl Blocked {
    /// Calls `run(depth of the block, A's panel, B's panel, B's next panel when paired, C from
    /// the block's first entry, accumulate)`: the panels are `depth × MR` and `depth × NR` words.
    #[allow(clippy::type_complexity)]
    fn visit<T>(&self, a: &[T], b: &[T], c: &mut [f32], ldc: usize, mut run: impl FnMut(usize, &[T], &[T], Option<&[T]>, &mut [f32], bool)) {
        let (d, ap, bp) = (self.depth, self.a_panels, self.b_panels);
        debug_assert!(ldc >= bp * NR && c.len() >= ap * MR * ldc);
        let blocks = d.div_ceil(self.max_depth);
        let step = d.div_ceil(blocks);
        let mut k0 = 0;
        while k0 < d {
            let kc = step.min(d - k0);
            let panel = |jp: usize| &b[jp * d * NR + k0 * NR..jp * d * NR + (k0 + kc) * NR];
            let mut one = |ip: usize, jp: usize, pair: bool| {
                let as_ = &a[ip * d * MR + k0 * MR..ip * d * MR + (k0 + kc) * MR];
                run(kc, as_, panel(jp), pair.then(|| panel(jp + 1)), &mut c[ip * MR * ldc + jp * NR..], k0 > 0);
            };
            if self.pairs {
                panel_pairs(ap, bp, one);
            } else {
                for jp in 0..bp {
                    for ip in 0..ap {
                        one(ip, jp, false);
                    }
                }
            }
            k0 += kc;
        }
    }
}

/// [`product`] for int8 quad panels (`super::int8`): `a` holds `ceil(a_rows/MR)` panels of
/// `quads(d) × MR` words, `b` holds `ceil(b_rows/NR)` panels of `quads(d) × NR` words, with the
/// rows' scales and sums from the same panel on. Depth is not blocked (see `super::int8`).
#[allow(clippy::too_many_arguments)]
pub fn product_int8(kernel: Int8Kernel, d: usize, a: (&[u32], &[f32]), a_rows: usize, b: (&[u32], &[f32], &[i32]), b_rows: usize, c: &mut [f32], ldc: usize) {
    let d4 = int8::quads(d);
    let ap = a_rows.div_ceil(MR);
    let bp = b_rows.div_ceil(NR);
    debug_assert!(ldc >= bp * NR && c.len() >= ap * MR * ldc);
    let (aw, a_scales) = a;
    let (bw, b_scales, b_sums) = b;
    let panel = |jp: usize| &bw[jp * d4 * NR..(jp + 1) * d4 * NR];
    panel_pairs(ap, bp, |ip, jp, pair| {
        let cols = jp * NR..(jp + 1 + usize::from(pair)) * NR;
        let sc = Scales { a: &a_scales[ip * MR..ip * MR + MR], b: &b_scales[cols.clone()], b_sums: &b_sums[cols] };
        let as_ = &aw[ip * d4 * MR..(ip + 1) * d4 * MR];
        let out = &mut c[ip * MR * ldc + jp * NR..];
        if pair {
            kernel.run2(d4, as_, panel(jp), panel(jp + 1), sc, out, ldc);
        } else {
            kernel.run(d4, as_, panel(jp), sc, out, ldc);
        }
    });
}

/// Visits every (row panel `ip`, column panel `jp`) of an `ap × bp` tile for the two-panel
/// kernels: column panels two at a time (`pair`: `jp` and `jp + 1`, so that each broadcast of A
/// serves both), the odd last one alone, and every row panel against each.
fn panel_pairs(ap: usize, bp: usize, mut visit: impl FnMut(usize, usize, bool)) {
    let mut jp = 0;
    while jp < bp {
        let pair = jp + 1 < bp;
        for ip in 0..ap {
            visit(ip, jp, pair);
        }
        jp += 1 + usize::from(pair);
    }
}

/// The operands a product reads: f32 panels, bf16 pair panels or int8 quad panels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operands {
    /// f32 (the exact products up to f32 rounding).
    F32,
    /// bf16 pairs (`super::bf16`): twice the multiply-adds per cycle with AVX-512 BF16.
    Bf16,
    /// int8 quads with per-row scales (`super::int8`): four times the f32 multiply-adds per
    /// cycle with AVX-512 VNNI, about twice with AVX2.
    Int8,
}

/// Panels of rows packed for the products, in the operand type asked for: always the f32
/// panels (the layout of `super::pack`), and for bf16 their pair panels, for int8 their quad
/// panels with the rows' scales and integer sums.
#[derive(Debug, Default)]
pub struct Packed {
    f32s: Vec<f32>,
    words: Vec<u32>,
    scales: Vec<f32>,
    sums: Vec<i32>,
}

impl Packed {
    /// Packs rows `row0..row0 + rows` of `data` (dimension `d`, minus `shift`) into panels of
    /// `r` rows for `ops`.
    #[allow(clippy::too_many_arguments)]
    pub fn pack(&mut self, ops: Operands, data: &[f32], d: usize, row0: usize, rows: usize, r: usize, shift: Option<&[f32]>) {
        super::pack::pack_panels(data, d, row0, rows, r, shift, &mut self.f32s);
        self.convert(ops, d, r);
    }

    /// The reduced panels of `ops` from the f32 panels.
    fn convert(&mut self, ops: Operands, d: usize, r: usize) {
        match ops {
            Operands::F32 => {}
            Operands::Bf16 => bf16::to_pairs(&self.f32s, d, r, &mut self.words),
            Operands::Int8 => int8::to_quads(&self.f32s, d, r, int8::format(), &mut self.words, &mut self.scales, &mut self.sums),
        }
    }

    /// [`Packed::pack`] with the f32 panels shared out among `workers` threads (see
    /// `super::pack::pack_panels_parallel`), for a large block.
    #[allow(clippy::too_many_arguments)]
    pub fn pack_parallel(&mut self, ops: Operands, data: &[f32], d: usize, row0: usize, rows: usize, r: usize, shift: Option<&[f32]>, workers: usize) {
        super::pack::pack_panels_parallel(data, d, row0, rows, r, shift, &mut self.f32s, workers);
        if ops != Operands::F32 {
            self.convert(ops, d, r);
            // The f32 panels are not read again: the reduced copy is what the products stream.
            self.f32s = Vec::new();
        }
    }
}

/// The kernels a product may run, chosen once per searcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernels {
    /// The f32 micro-kernel.
    pub f32: MicroKernel,
    /// The bf16 micro-kernel.
    pub bf16: Bf16Kernel,
    /// The int8 micro-kernel.
    pub int8: Int8Kernel,
}

impl Kernels {
    /// The best of each this CPU runs.
    pub fn detect() -> Self {
        Kernels { f32: MicroKernel::detect(), bf16: Bf16Kernel::detect(), int8: Int8Kernel::detect() }
    }

    /// The products of A's panels (from its panel `a_panel` on, `a_rows` rows, of `MR`) and B's
    /// (from its panel `b_panel` on, `b_rows` rows, of `NR`), both packed for `ops`, into `c`
    /// (see [`product`]).
    #[allow(clippy::too_many_arguments)]
    pub fn product(
        self,
        ops: Operands,
        d: usize,
        a: &Packed,
        a_panel: usize,
        a_rows: usize,
        b: &Packed,
        b_panel: usize,
        b_rows: usize,
        c: &mut [f32],
        ldc: usize,
    ) {
        match ops {
            Operands::F32 => product(self.f32, d, &a.f32s[a_panel * d * MR..], a_rows, &b.f32s[b_panel * d * NR..], b_rows, c, ldc),
            Operands::Bf16 => {
                let d2 = bf16::pairs(d);
                product_bf16(self.bf16, d, &a.words[a_panel * d2 * MR..], a_rows, &b.words[b_panel * d2 * NR..], b_rows, c, ldc)
            }
            Operands::Int8 => {
                let d4 = int8::quads(d);
                let (a0, b0) = (a_panel * MR, b_panel * NR);
                let a = (&a.words[a0 * d4..], &a.scales[a0..]);
                let b = (&b.words[b0 * d4..], &b.scales[b0..], &b.sums[b0..]);
                product_int8(self.int8, d, a, a_rows, b, b_rows, c, ldc)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::panel_pairs;

    /// Every (row panel, column panel) is covered once, pairs never run past the last panel.
    #[test]
    fn panel_pairs_cover_every_panel_once() {
        for (ap, bp) in [(1, 1), (3, 1), (2, 2), (4, 5), (1, 7), (0, 3), (3, 0)] {
            let mut seen = vec![0u32; ap * bp];
            panel_pairs(ap, bp, |ip, jp, pair| {
                for j in jp..jp + 1 + usize::from(pair) {
                    assert!(j < bp, "{ap}x{bp}: panel {j} past the end");
                    seen[ip * bp + j] += 1;
                }
                assert!(pair || jp + 1 == bp, "{ap}x{bp}: a single panel {jp} before the last");
            });
            assert!(seen.iter().all(|&n| n == 1), "{ap}x{bp}: {seen:?}");
        }
    }
}

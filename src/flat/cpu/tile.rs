//! One product tile: `C = A · Bᵀ` for a block of query rows against a block of database rows,
//! from packed panels, blocked over depth so the B micro-panel in use stays in L1.

use super::microkernel::{MicroKernel, MR, NR};

/// Depth of one pass: a B micro-panel of `KC_MAX × NR` f32 is 24 KiB, inside a 32 KiB L1.
const KC_MAX: usize = 384;

/// Computes the `a_rows × b_rows` products (padded to whole panels) into `c` (row stride `ldc`
/// ≥ `b_rows` rounded up to `NR`). `a` holds `ceil(a_rows/MR)` panels of `d × MR`, `b` holds
/// `ceil(b_rows/NR)` panels of `d × NR` (see [`super::pack::pack_panels`] with full depth).
pub fn product(kernel: MicroKernel, d: usize, a: &[f32], a_rows: usize, b: &[f32], b_rows: usize, c: &mut [f32], ldc: usize) {
    let ap = a_rows.div_ceil(MR);
    let bp = b_rows.div_ceil(NR);
    debug_assert!(ldc >= bp * NR && c.len() >= ap * MR * ldc);
    // Equal depth blocks (no short tail block).
    let blocks = d.div_ceil(KC_MAX);
    let kc_step = d.div_ceil(blocks);
    let mut k0 = 0;
    while k0 < d {
        let kc = kc_step.min(d - k0);
        for jp in 0..bp {
            let bs = &b[jp * d * NR + k0 * NR..jp * d * NR + (k0 + kc) * NR];
            for ip in 0..ap {
                let as_ = &a[ip * d * MR + k0 * MR..ip * d * MR + (k0 + kc) * MR];
                kernel.run(kc, as_, bs, &mut c[ip * MR * ldc + jp * NR..], ldc, k0 > 0);
            }
        }
        k0 += kc;
    }
}

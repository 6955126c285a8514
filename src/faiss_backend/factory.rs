//! Checks a faiss index factory string, the data's shape and the metric before faiss sees them.
//!
//! faiss parses factory strings with regular expressions and trusts the numbers in them: `HNSW0`
//! and `IVF0,Flat` crash it, `PQ0` divides by zero, `HNSW1` never ends its level draw, `OPQ`
//! with fewer rows than dimensions corrupts the heap, and metrics other than L2 / inner product
//! crash its IVF training. So this crate serves a stated grammar of factory strings, each
//! parameter checked against the dimension, the training rows and the metric:
//!
//! ```text
//! factory   := (transform ",")* body [",RFlat"]
//! transform := PCA[W][R]<d'> | OPQ<M>[_<d'>] | RR[<d'>] | ITQ[<d'>] | Pad<d'> | L2norm
//! body      := Flat | HNSW[<M>][("," | "_") hnsw_code] | IVF<nlist>[_HNSW[<M>]] "," ivf_code
//!            | pq | pq_fs | sq | RaBitQ | LSH[<bits>][r][t]
//! hnsw_code := Flat | pq | sq          ivf_code := Flat | pq | pq_fs[r] | sq | RaBitQ
//! pq        := PQ<M>[x<bits>][np]     pq_fs := PQ<M>x4fs     sq := SQ4 | SQ6 | SQ8 | SQfp16 | SQbf16
//! ```
//!
//! `<nlist>` may end in `k` (×1024) or `M` (×1024²). Anything outside the grammar is refused
//! with the grammar in the message, not passed to faiss.

use crate::error::{Error, Result};
use crate::metric::Metric;

/// The limits on the parameters, with the reason each exists.
mod limits {
    /// HNSW's level draw divides by ln M: M = 1 never ends, M = 0 crashes.
    pub const HNSW_MIN_M: u64 = 2;
    /// Beyond this the graph's links (2·M per row on level 0) outweigh any use.
    pub const HNSW_MAX_M: u64 = 512;
    /// A PQ code of more bits per sub-vector needs 2^bits centroids per sub-space.
    pub const PQ_MAX_BITS: u64 = 16;
    /// OPQ trains a PQ of 2^8 centroids per sub-space.
    pub const OPQ_MIN_ROWS: usize = 256;
}

/// What faiss will be asked to build, as far as the checks need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactoryPlan {
    /// The dimension the index body sees (after the transforms).
    pub body_dim: usize,
    /// The body is a plain `Flat` with no transform: exact search.
    pub exact_flat: bool,
    /// The index compares every query with every row (a `Flat` body, after transforms or not):
    /// it must fill every slot, so an unfilled one means faiss computed NaN distances.
    pub exhaustive: bool,
    /// The index builds an HNSW graph (`HNSW…` bodies, and `IVF<n>_HNSW<M>`'s quantizer).
    pub hnsw_graph: bool,
    /// The index stores the rows themselves as float16: an `SQfp16` code with no transform
    /// before it (`SQfp16`, and HNSW over it: `HNSW32,SQfp16`, `HNSW32_SQfp16`).
    pub fp16_rows: bool,
}

/// Checks `factory` for `d`-dimensional data, `train_rows` training rows and `metric`.
pub fn check(factory: &str, d: usize, train_rows: usize, metric: Metric) -> Result<FactoryPlan> {
    let bad = |reason: String| Error::invalid("string_factory", format!("{factory:?}: {reason}"));
    if factory.trim().is_empty() {
        return Err(bad("empty (leave it unset for exact flat search)".into()));
    }
    if d == 0 {
        return Err(Error::invalid("dimension", "0: rows need at least one component"));
    }
    let parts: Vec<&str> = factory.split(',').map(str::trim).collect();
    let (parts, refine) = match parts.split_last() {
        Some((&"RFlat", rest)) if !rest.is_empty() => (rest, true),
        _ => (&parts[..], false),
    };
    if refine && !matches!(metric, Metric::L2 | Metric::InnerProduct) {
        return Err(bad(format!("RFlat re-ranks by L2 or inner product only, not {metric:?}")));
    }
    let mut dim = d;
    let mut i = 0;
    let mut transforms = 0;
    while i + 1 < parts.len() {
        match transform(parts[i], dim, d, train_rows).map_err(&bad)? {
            Some(out) => {
                dim = out;
                transforms += 1;
                i += 1;
            }
            None => break,
        }
    }
    let body = &parts[i..];
    if transforms > 0 && !matches!(metric, Metric::L2 | Metric::InnerProduct) {
        return Err(bad(format!("metric {metric:?} is served by Flat (and HNSW for L1 and Linf) without transforms")));
    }
    let ctx = Ctx { dim, train_rows, metric };
    ctx.body(body).map_err(|r| bad(format!("{r}; {}", grammar_hint())))?;
    Ok(FactoryPlan {
        body_dim: dim,
        exact_flat: transforms == 0 && body == ["Flat"],
        exhaustive: body == ["Flat"],
        hnsw_graph: body.iter().any(|c| c.contains("HNSW")),
        fp16_rows: transforms == 0 && body.iter().any(|c| *c == "SQfp16" || c.ends_with("_SQfp16")),
    })
}

/// The string faiss is asked to build for `factory` (already [`check`]ed): its components
/// trimmed (faiss matches each one whole, so `"IVF64, Flat"` would fail there), and every plain
/// PQ code (`PQ<M>` or `PQ<M>x<bits>`: of an `IndexPQ`, `IndexIVFPQ` or HNSW over PQ; not a
/// fast-scan code) given faiss's `np` option unless the search uses polysemous codes
/// (`polysemous`: the `ht` search parameter).
///
/// Why: by default faiss follows the k-means of such a code with a *polysemous training*, an
/// annealing that renumbers each sub-quantizer's centroids so that Hamming distances between
/// codes track real distances. It takes about 1.5 s per sub-quantizer whatever the data's size
/// (24 s of a 25 s PQ16 run on 10,000 rows) and changes nothing a plain search depends on: the
/// k-means is the same (on every training row), and a query's distance to a code is a sum of
/// table entries looked up by centroid, whatever the centroids are numbered (HNSW over PQ
/// computes its code-to-code table itself). Only the rounding of an entry can change with its
/// centroid's place in the table, which decides near-ties: on 10,000 MiniLM-like rows every
/// PQ16 list is faiss's own, on 100,000 rows 19 lists differ by one neighbour (the faiss-cpu
/// wheel with and without `np` alike), recall unchanged. A search with `ht` filters by Hamming
/// distance, and keeps the training (with `ht` at M·bits + 1 or more it filters nothing).
pub fn build_string(factory: &str, polysemous: bool) -> String {
    let plain_pq = |c: &str| {
        let Some(rest) = c.strip_prefix("PQ") else { return false };
        let (m, bits) = rest.split_once('x').unwrap_or((rest, "8"));
        [m, bits].iter().all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
    };
    let parts: Vec<String> = factory
        .split(',')
        .map(str::trim)
        .map(|c| {
            // "HNSW32_PQ16" is one component: its code follows the underscore.
            let code = if c.starts_with("HNSW") { c.split_once('_').map_or("", |(_, code)| code) } else { c };
            if !polysemous && plain_pq(code) {
                format!("{c}np")
            } else {
                c.to_owned()
            }
        })
        .collect();
    parts.join(",")
}

fn grammar_hint() -> &'static str {
    "this crate serves factory strings of the form [PCA<d>|PCAW<d>|PCAR<d>|OPQ<M>[_<d>]|RR<d>|ITQ[<d>]|Pad<d>|L2norm,]… \
     followed by Flat, HNSW<M>[,Flat|,PQ<M>|,SQ8], IVF<nlist>[_HNSW<M>],(Flat|PQ<M>[x<bits>]|PQ<M>x4fs|SQ8|RaBitQ), \
     PQ<M>[x<bits>], SQ4|SQ6|SQ8|SQfp16|SQbf16, RaBitQ or LSH, optionally ending in ,RFlat"
}

/// "unknown component", naming faiss's spelling where only the letters' case differs (faiss
/// matches names case-sensitively).
fn unknown(c: &str) -> String {
    const NAMES: [&str; 15] = ["Flat", "HNSW", "IVF", "PQ", "SQ", "LSH", "RFlat", "RaBitQ", "RR", "PCA", "OPQ", "ITQ", "Pad", "L2norm", "IDMap"];
    let lower = c.to_ascii_lowercase();
    match NAMES.iter().find(|n| lower.starts_with(&n.to_ascii_lowercase()) && !c.starts_with(**n)) {
        Some(n) => format!("unknown component {c:?} (faiss's names are case-sensitive: {n}…)"),
        None if c.starts_with("IDMap") => format!("unknown component {c:?} (rows are numbered by their position; no IDMap is needed)"),
        None => format!("unknown component {c:?}"),
    }
}

/// A transform's output dimension, or `None` when `s` is not a transform. `dim` is its input's
/// dimension, `d0` the data's (chained rotations may not grow beyond 16 × it).
fn transform(s: &str, dim: usize, d0: usize, train_rows: usize) -> std::result::Result<Option<usize>, String> {
    if s.eq_ignore_ascii_case("L2norm") {
        return Ok(Some(dim));
    }
    if let Some(rest) = s.strip_prefix("PCA") {
        let (whiten, rest) = rest.strip_prefix('W').map_or((false, rest), |r| (true, r));
        let rest = rest.strip_prefix('R').unwrap_or(rest);
        let out = number(rest, s)?;
        if out == 0 || out > dim as u64 {
            return Err(format!("{s}: a PCA keeps between 1 and {dim} dimensions (the input's), not {out}"));
        }
        // Whitening divides by each kept component's spread: with fewer rows than kept
        // dimensions + 1 some spreads are 0 and every score would be inf or NaN.
        if whiten && train_rows <= out as usize {
            return Err(format!("{s}: whitening {out} components needs more than {out} training rows, there are {train_rows}"));
        }
        if train_rows < out as usize {
            return Err(pca_rows(s, out, train_rows));
        }
        return Ok(Some(out as usize));
    }
    if let Some(rest) = s.strip_prefix("OPQ") {
        let (m, out) = match rest.split_once('_') {
            Some((m, o)) => (number(m, s)?, number(o, s)?),
            None => (number(rest, s)?, dim as u64),
        };
        if m == 0 || out == 0 || out > dim as u64 || out % m != 0 {
            return Err(format!("{s}: OPQ<M>_<d'> needs 1 ≤ d' ≤ {dim} (the input's dimension) and d' divisible by M (got M = {m}, d' = {out})"));
        }
        let need = dim.max(limits::OPQ_MIN_ROWS);
        if train_rows < need {
            return Err(format!(
                "{s}: OPQ trains a rotation of {dim} dimensions and a {}-centroid quantizer; it needs at least {need} training rows, there are {train_rows}",
                limits::OPQ_MIN_ROWS
            ));
        }
        return Ok(Some(out as usize));
    }
    if let Some(rest) = s.strip_prefix("RR") {
        let out = if rest.is_empty() { dim as u64 } else { number(rest, s)? };
        if out == 0 || out > 16 * d0 as u64 {
            return Err(format!("{s}: a random rotation maps to between 1 and {} dimensions (16 × the data's), not {out}", 16 * d0));
        }
        return Ok(Some(out as usize));
    }
    if let Some(rest) = s.strip_prefix("ITQ") {
        // ITQ<d'> reduces to d' dimensions by PCA, then rotates; plain ITQ keeps the dimension.
        let out = if rest.is_empty() { dim as u64 } else { number(rest, s)? };
        if out == 0 || out > dim as u64 {
            return Err(format!("{s}: ITQ keeps between 1 and {dim} dimensions (the input's), not {out}"));
        }
        if train_rows < 2 {
            return Err(format!("{s}: ITQ trains a rotation on at least 2 training rows, there are {train_rows}"));
        }
        if !rest.is_empty() && train_rows < out as usize {
            return Err(pca_rows(s, out, train_rows));
        }
        return Ok(Some(out as usize));
    }
    if let Some(rest) = s.strip_prefix("Pad") {
        // Zero components appended up to d' (faiss keeps the dimension when d' is smaller).
        let out = number(rest, s)?;
        if out == 0 || out > 16 * d0 as u64 {
            return Err(format!("{s}: padding reaches between 1 and {} dimensions (16 × the data's), not {out}", 16 * d0));
        }
        return Ok(Some(dim.max(out as usize)));
    }
    Ok(None)
}

/// A PCA to `out` dimensions finds them among the training rows' own directions: it needs at
/// least `out` rows (faiss stops otherwise).
fn pca_rows(s: &str, out: u64, train_rows: usize) -> String {
    format!("{s}: a PCA to {out} dimensions needs at least {out} training rows, there are {train_rows}")
}

/// A decimal parameter of component `whole`.
fn number(s: &str, whole: &str) -> std::result::Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{whole}: expected a number, found {s:?}"));
    }
    s.parse::<u64>().map_err(|_| format!("{whole}: {s} is out of range"))
}

struct Ctx {
    dim: usize,
    train_rows: usize,
    metric: Metric,
}

impl Ctx {
    fn body(&self, body: &[&str]) -> std::result::Result<(), String> {
        let first = *body.first().ok_or("no index after the transforms")?;
        let extra_metric = !matches!(self.metric, Metric::L2 | Metric::InnerProduct);
        if let Some(rest) = first.strip_prefix("HNSW") {
            // "HNSW32_PQ16" is faiss's older spelling of "HNSW32,PQ16".
            let (m, code) = match rest.split_once('_') {
                Some((m, c)) if body.len() == 1 => (m, Some(c)),
                _ => (rest, body.get(1).copied()),
            };
            if body.len() > 2 {
                return Err(format!("unexpected {:?} after {first},{}", body[2], body[1]));
            }
            let m = if m.is_empty() { 32 } else { number(m, first)? };
            if !(limits::HNSW_MIN_M..=limits::HNSW_MAX_M).contains(&m) {
                return Err(format!("{first}: HNSW's M (links per node) must be between {} and {}, not {m}", limits::HNSW_MIN_M, limits::HNSW_MAX_M));
            }
            return match code {
                None | Some("Flat") => {
                    if extra_metric && !matches!(self.metric, Metric::L1 | Metric::Linf) {
                        Err(format!("faiss's HNSW computes {:?} with terms that are NaN on zero components; use Flat for this metric", self.metric))
                    } else {
                        Ok(())
                    }
                }
                Some(code) => {
                    self.l2_or_ip(first)?;
                    if code.starts_with("PQ") && self.metric != Metric::L2 {
                        return Err(format!("{first},{code}: faiss's HNSW over PQ codes always ranks by L2, not {:?}", self.metric));
                    }
                    self.code(code, false)
                }
            };
        }
        if first == "Flat" && body.len() == 1 {
            return Ok(());
        }
        let known = first == "Flat" || first == "RaBitQ" || ["IVF", "PQ", "SQ", "LSH"].iter().any(|p| first.starts_with(p));
        if !known {
            return Err(unknown(first));
        }
        self.l2_or_ip(first)?;
        if let Some(rest) = first.strip_prefix("IVF") {
            let nlist_s = rest.split_once("_HNSW").map_or(rest, |(n, _)| n);
            if let Some((_, m)) = rest.split_once("_HNSW") {
                let m = if m.is_empty() { 32 } else { number(m, first)? };
                if !(limits::HNSW_MIN_M..=limits::HNSW_MAX_M).contains(&m) {
                    return Err(format!("{first}: HNSW's M must be between {} and {}, not {m}", limits::HNSW_MIN_M, limits::HNSW_MAX_M));
                }
            }
            let (digits, mult) = match nlist_s.strip_suffix('k') {
                Some(n) => (n, 1024),
                None => nlist_s.strip_suffix('M').map_or((nlist_s, 1), |n| (n, 1024 * 1024)),
            };
            let nlist = number(digits, first)?.checked_mul(mult).ok_or_else(|| format!("{first}: out of range"))?;
            if nlist == 0 {
                return Err(format!("{first}: an inverted file needs at least one list"));
            }
            if nlist > self.train_rows as u64 {
                return Err(format!("{first}: k-means needs at least as many training rows as lists ({nlist}), there are {}", self.train_rows));
            }
            return match body {
                [_, code] => self.code(code, true),
                [_] => Err(format!("{first} needs a code after it, e.g. {first},Flat")),
                _ => Err(format!("unexpected {:?} after {first},{}", body[2], body[1])),
            };
        }
        if body.len() > 1 {
            return Err(format!("unexpected {:?} after {first}", body[1]));
        }
        if first == "RaBitQ" {
            return Ok(());
        }
        if let Some(rest) = first.strip_prefix("LSH") {
            let (digits, flags) = rest.split_at(rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len()));
            if !matches!(flags, "" | "r" | "t" | "rt") {
                return Err(format!("{first}: expected LSH[<bits>][r][t]"));
            }
            let rotate = flags.contains('r');
            if self.metric != Metric::L2 {
                return Err(format!("{first}: faiss's LSH index serves metric L2 only, not {:?}", self.metric));
            }
            let bits = if digits.is_empty() { self.dim as u64 } else { number(digits, first)? };
            let max = if rotate { 16 * self.dim as u64 } else { self.dim as u64 };
            if bits == 0 || bits > max {
                return Err(format!("{first}: LSH needs 1 ≤ bits ≤ {max} (the dimension, or 16 × it with the r option), not {bits}"));
            }
            return Ok(());
        }
        self.code(first, false)
    }

    fn l2_or_ip(&self, what: &str) -> std::result::Result<(), String> {
        if matches!(self.metric, Metric::L2 | Metric::InnerProduct) {
            Ok(())
        } else {
            Err(format!(
                "{what}: metric {:?} is served by Flat (and HNSW for L1 and Linf); faiss's other indexes train with L2 and crash or return NaN under it",
                self.metric
            ))
        }
    }

    /// A code: Flat (IVF only), PQ, fast-scan PQ (`ivf`: with the `r` option) or SQ.
    fn code(&self, code: &str, ivf: bool) -> std::result::Result<(), String> {
        if (code == "Flat" || code == "RaBitQ") && ivf {
            return Ok(());
        }
        if code == "RaBitQ" {
            return Err("RaBitQ codes are searched flat (RaBitQ) or under an inverted file (IVF<nlist>,RaBitQ), not under HNSW".into());
        }
        if matches!(code, "SQ4" | "SQ6" | "SQ8" | "SQfp16" | "SQbf16") {
            return Ok(());
        }
        let Some(rest) = code.strip_prefix("PQ") else {
            return Err(unknown(code));
        };
        let (rest, fast) = match rest.strip_suffix("x4fs").or_else(|| rest.strip_suffix("x4fsr").filter(|_| ivf)) {
            Some(r) => (r, true),
            None => (rest, false),
        };
        let rest = if fast { rest } else { rest.strip_suffix("np").unwrap_or(rest) };
        let (m, bits) = match rest.split_once('x') {
            Some((m, b)) if !fast => (number(m, code)?, number(b, code)?),
            _ => (number(rest, code)?, if fast { 4 } else { 8 }),
        };
        let dim = self.dim as u64;
        if m == 0 || !dim.is_multiple_of(m) {
            return Err(format!("{code}: PQ<M> splits the {dim} dimensions into M equal sub-vectors; M must divide {dim}, not be {m}"));
        }
        if bits == 0 || bits > limits::PQ_MAX_BITS {
            return Err(format!("{code}: PQ codes have 1 to {} bits per sub-vector, not {bits}", limits::PQ_MAX_BITS));
        }
        let centroids = 1u64 << bits;
        if (self.train_rows as u64) < centroids {
            return Err(format!(
                "{code}: training {centroids} centroids per sub-vector needs at least {centroids} training rows, there are {}",
                self.train_rows
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(f: &str, d: usize, n: usize, m: Metric) {
        if let Err(e) = check(f, d, n, m) {
            panic!("{f} (d {d}, n {n}, {m:?}) refused: {e}");
        }
    }

    fn refused(f: &str, d: usize, n: usize, m: Metric, word: &str) {
        match check(f, d, n, m) {
            Ok(_) => panic!("{f} (d {d}, n {n}, {m:?}) accepted"),
            Err(e) => assert!(e.to_string().contains(word), "{f}: {e}"),
        }
    }

    #[test]
    fn common_strings_pass() {
        for f in [
            "Flat",
            "HNSW32",
            "HNSW32,Flat",
            "HNSW16,SQ8",
            "HNSW",
            "IVF256,Flat",
            "IVF1k,Flat",
            "IVF64_HNSW32,Flat",
            "IVF256,PQ32",
            "IVF256,PQ32x4fs",
            "IVF256,PQ32x4fsr",
            "PQ16",
            "PQ16x4fs",
            "PQ8x10",
            "SQ8",
            "SQfp16",
            "LSH",
            "LSHrt",
            "PCA64,Flat",
            "PCAR64,IVF16,Flat",
            "OPQ16_64,IVF16,PQ16",
            "L2norm,Flat",
            "RR128,PQ32",
            "IVF16,Flat,RFlat",
            "PQ16np",
            "RaBitQ",
            "IVF16,RaBitQ",
            "IVF16,RaBitQ,RFlat",
            "ITQ32,LSH",
            "ITQ,LSH",
            "ITQ64,IVF16,Flat",
            "Pad400,Flat",
            "Pad400,PQ16",
            "Pad8,HNSW32",
        ] {
            ok(f, 384, 5000, Metric::L2);
        }
        ok("RaBitQ", 5, 3, Metric::InnerProduct);
        ok("IVF16,SQ8", 384, 5000, Metric::InnerProduct);
        ok("Flat", 5, 3, Metric::JensenShannon);
        ok("HNSW32", 5, 3, Metric::L1);
    }

    #[test]
    fn crashing_strings_are_refused() {
        refused("HNSW0", 8, 100, Metric::L2, "M (links per node)");
        refused("HNSW1", 8, 100, Metric::L2, "between 2 and 512");
        refused("IVF0,Flat", 8, 100, Metric::L2, "at least one list");
        refused("PQ0", 8, 100, Metric::L2, "M must divide");
        refused("PQ1x0", 8, 100, Metric::L2, "1 to 16 bits");
        refused("IVF2,PQ0", 8, 100, Metric::L2, "M must divide");
        refused("PQ3", 8, 1000, Metric::L2, "M must divide");
        refused("OPQ8,Flat", 384, 300, Metric::L2, "at least 384 training rows");
        refused("PCA0,Flat", 8, 100, Metric::L2, "between 1 and 8");
        refused("PCAW8,Flat", 8, 5, Metric::L2, "whitening");
        refused("LSH0", 8, 100, Metric::L2, "1 ≤ bits");
        refused("LSH70000rt", 16, 100, Metric::L2, "1 ≤ bits ≤ 256");
        refused("LSH", 8, 100, Metric::InnerProduct, "L2 only");
        refused("IVF1,Flat", 8, 100, Metric::Canberra, "served by Flat");
        refused("IVF1,Flat", 8, 100, Metric::JensenShannon, "served by Flat");
        refused("HNSW32", 8, 100, Metric::Canberra, "NaN");
        refused("HNSW32,PQ4", 8, 1000, Metric::InnerProduct, "always ranks by L2");
        refused("IVF300,Flat", 8, 100, Metric::L2, "at least as many training rows");
        refused("PQ4", 8, 100, Metric::L2, "at least 256 training rows");
        refused("IVF99999999999999999999,Flat", 8, 100, Metric::L2, "out of range");
        refused("IVF4,Foo", 8, 100, Metric::L2, "unknown component");
        refused("NSG32", 8, 100, Metric::L2, "this crate serves");
        refused("Flat,Flat", 8, 100, Metric::L2, "unexpected");
        // faiss's own errors, said before faiss sees them.
        refused("PCA32,Flat", 384, 17, Metric::L2, "at least 32 training rows");
        refused("ITQ32,LSH", 384, 17, Metric::L2, "at least 32 training rows");
        refused("ITQ,LSH", 8, 1, Metric::L2, "at least 2 training rows");
        refused("ITQ9,Flat", 8, 100, Metric::L2, "between 1 and 8");
        refused("Pad200,Flat", 8, 100, Metric::L2, "16 × the data's");
        refused("RaBitQ", 8, 100, Metric::L1, "served by Flat");
        refused("IVF4,RaBitQ", 8, 100, Metric::Canberra, "served by Flat");
        // Names outside the grammar say so, with faiss's spelling where only the case differs.
        refused("flat", 8, 100, Metric::L2, "case-sensitive: Flat");
        refused("flat", 8, 100, Metric::L1, "case-sensitive: Flat");
        refused("HNSW32,RaBitQ", 8, 100, Metric::L2, "not under HNSW");
        refused("hnsw32", 8, 100, Metric::L2, "case-sensitive: HNSW");
        refused("IDMap,Flat", 8, 100, Metric::L2, "unknown component \"IDMap\"");
        refused("NSG32,Flat", 8, 100, Metric::L2, "unknown component \"NSG32\"");
        refused(" ", 8, 100, Metric::L2, "empty");
    }

    #[test]
    fn plain_pq_codes_skip_the_polysemous_training_unless_searched_with_ht() {
        for (f, want) in [
            ("PQ16", "PQ16np"),
            ("PQ8x10", "PQ8x10np"),
            ("IVF256,PQ32", "IVF256,PQ32np"),
            ("IVF64_HNSW32, PQ16", "IVF64_HNSW32,PQ16np"),
            ("OPQ16_64,IVF16,PQ16", "OPQ16_64,IVF16,PQ16np"),
            ("PCA64,PQ16,RFlat", "PCA64,PQ16np,RFlat"),
            ("RR128,PQ32", "RR128,PQ32np"),
            // Unchanged: already np, fast-scan codes, no PQ at all (spaces trimmed).
            ("PQ16np", "PQ16np"),
            ("IVF256,PQ32np", "IVF256,PQ32np"),
            ("PQ16x4fs", "PQ16x4fs"),
            ("IVF256,PQ32x4fsr", "IVF256,PQ32x4fsr"),
            ("HNSW32,PQ16", "HNSW32,PQ16np"),
            ("HNSW32_PQ16", "HNSW32_PQ16np"),
            ("HNSW16,SQ8", "HNSW16,SQ8"),
            ("IVF256,Flat", "IVF256,Flat"),
            ("IVF64_HNSW32, Flat", "IVF64_HNSW32,Flat"),
            ("OPQ16,Flat", "OPQ16,Flat"),
            ("SQ8", "SQ8"),
        ] {
            check(f, 384, 5000, Metric::L2).unwrap();
            assert_eq!(build_string(f, false), want, "{f}");
            let trimmed: Vec<&str> = f.split(',').map(str::trim).collect();
            assert_eq!(build_string(f, true), trimmed.join(","), "{f} searched with ht");
        }
    }

    #[test]
    fn transforms_change_the_dimension() {
        assert_eq!(
            check("PCA64,IVF4,PQ16", 384, 1000, Metric::L2).unwrap(),
            FactoryPlan { body_dim: 64, exact_flat: false, exhaustive: false, hnsw_graph: false, fp16_rows: false }
        );
        assert_eq!(
            check("PCA64,Flat", 384, 1000, Metric::L2).unwrap(),
            FactoryPlan { body_dim: 64, exact_flat: false, exhaustive: true, hnsw_graph: false, fp16_rows: false }
        );
        refused("PCA64,PQ48", 384, 1000, Metric::L2, "M must divide 64");
        assert!(check("Flat", 3, 2, Metric::L2).unwrap().exact_flat);
        refused("RR128,RR2048,RR32768,Flat", 8, 100, Metric::L2, "16 × the data's");
        refused("HNSW16,RFlat", 8, 100, Metric::L1, "RFlat");
    }

    /// The plan says which indexes build an HNSW graph (built on one thread, see `omp`) and
    /// which store the rows as float16 (their range is checked first).
    #[test]
    fn the_plan_names_graphs_and_float16_rows() {
        let plan = |f: &str| check(f, 64, 1000, Metric::L2).unwrap();
        for f in ["HNSW32", "HNSW16,Flat", "HNSW32_PQ16", "IVF16_HNSW8,Flat", "PCA32,HNSW8", "HNSW8,SQ8,RFlat"] {
            assert!(plan(f).hnsw_graph, "{f}");
        }
        for f in ["Flat", "IVF16,Flat", "PQ16", "SQfp16", "LSH"] {
            assert!(!plan(f).hnsw_graph, "{f}");
        }
        for f in ["SQfp16", "SQfp16,RFlat", " SQfp16 ", "HNSW8,SQfp16", "HNSW8_SQfp16"] {
            assert!(plan(f).fp16_rows, "{f}");
        }
        for f in ["PCA32,SQfp16", "SQbf16", "SQ8", "IVF16,SQ8", "Flat"] {
            assert!(!plan(f).fp16_rows, "{f}");
        }
    }
}

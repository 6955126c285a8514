//! The command-line flags. Values are parsed by the library's own parsers (`Metric::parse`,
//! `Device`, `Precision`), so a bad value gets the same message as from the API, via clap.

use clap::Parser;
use faiss_nn::device::Device;
use faiss_nn::metric::Metric;
use faiss_nn::precision::Precision;
use std::path::PathBuf;

/// Shown after the flags in `--help`.
const AFTER_HELP: &str = "\
Without --input, the bundled demo set is searched (3,000 PyPI package descriptions, MiniLM
embeddings). With no --input and no --output, some rows and their neighbours are printed and
nothing is written.

Output: every input row and column, plus nn_indices (list<int64>, row numbers counted from 0)
and nn_scores (list<float32>), best first; a row is never in its own list. Scores are squared L2
distances (ascending), inner products or cosine similarities (descending); an unfilled slot (an
approximate index that found fewer than k rows) has index -1 and score +/-inf, written as null
in JSON; a warning counts such rows. The file is written atomically: a failed or killed run
leaves no output. The output may not be the input file; a symbolic link as output has its
target replaced.

Dedup (--threshold T): instead of k neighbours, every pair of rows whose exact score passes T
(cosine similarity above T by default; with --metric l2 a squared distance below T, with ip an
inner product above T) joins their rows into one duplicate group, transitively. The output is
every input row and column plus dup_group (int64: the row number the group keeps, the row's own
for a kept or unique row) and keep (bool: exactly one row per group). --keep chooses that row:
first (the lowest row number), or max:COLUMN / min:COLUMN (the largest / smallest value of a
column: numbers, dates and times by value, text and lists by their length (a date written as
JSON text is text); ties to the lowest row number; nulls never chosen).
--pairs FILE also writes every passing pair (i, j, score; i < j, sorted) as Parquet or JSON
Lines. Each pair is computed once and decided on its f64 score; the join runs on the CPU.

Examples:
  faiss-nn
  faiss-nn --input docs.parquet --k 10
  faiss-nn --input vectors.npy --output nn.jsonl --metric ip --k 5
  faiss-nn --input docs.jsonl --column vec --string-factory IVF256,Flat --device 0,1
  faiss-nn --input docs.parquet --threshold 0.95 --keep max:text --pairs dups.parquet";

/// For every row of an embedding dataset, its k nearest neighbours among the same rows.
#[derive(Debug, Clone, Parser)]
#[command(name = "faiss-nn", version, after_help = AFTER_HELP)]
pub struct Args {
    /// Input file: .parquet, .jsonl/.ndjson/.json (one object per line) or .npy (2-D float32,
    /// float64 or float16 array) [default: the bundled demo set]
    #[arg(long, value_name = "PATH")]
    pub input: Option<PathBuf>,

    /// Output file, .parquet or .jsonl/.ndjson/.json [default: <input stem>.nn.<input
    /// extension> next to the input (.dedup. with --threshold), .parquet for .npy input;
    /// replaced if it exists]
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Column (or JSON field) holding the embeddings: a list of numbers per row. For .npy input,
    /// the name the output gives the array's column
    #[arg(long, value_name = "NAME", default_value = "embedding")]
    pub column: String,

    /// Neighbours per row [default: 1, or 3 in the demo]
    #[arg(long, value_name = "N", allow_negative_numbers = true, conflicts_with = "threshold")]
    pub k: Option<usize>,

    /// Distance: l2 (squared Euclidean), ip (inner product), cosine (the rows normalised, their
    /// inner products), l1, linf, canberra, braycurtis, jensenshannon, or a faiss METRIC_*
    /// integer (0 inner product, 1 L2, 2 L1, 3 Linf, 20 Canberra, 21 BrayCurtis,
    /// 22 JensenShannon) [default: l2, or cosine with --threshold]
    #[arg(long, value_name = "l2|ip|cosine|..|INT", allow_negative_numbers = true, value_parser = Metric::parse)]
    pub metric: Option<Metric>,

    /// Dedup instead of k neighbours: rows whose score passes T are duplicates (see below);
    /// writes dup_group and keep
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    pub threshold: Option<f64>,

    /// With --threshold: which row each duplicate group keeps: first, max:COLUMN or min:COLUMN
    /// [default: first]
    #[arg(long, value_name = "first|max:COL|min:COL", requires = "threshold", value_parser = parse_keep)]
    pub keep: Option<KeepArg>,

    /// With --threshold: also write every passing pair (i, j, score) to this file (.parquet or
    /// .jsonl)
    #[arg(long, value_name = "PATH", requires = "threshold")]
    pub pairs: Option<PathBuf>,

    /// With --threshold: stop with an error when more pairs than this pass [default: what the
    /// memory budget holds, 26,843,545 pairs]
    #[arg(long, value_name = "N", requires = "threshold")]
    pub max_pairs: Option<usize>,

    /// Where to search: cpu, a CUDA device id, a list of ids (the data is sharded over them), or
    /// -1 for every GPU
    #[arg(long, value_name = "cpu|ID|ID,ID,..|-1", default_value = "cpu", allow_hyphen_values = true,
          value_parser = parse_device)]
    pub device: DeviceArg,

    /// faiss index factory string, e.g. "IVF256,Flat" or "HNSW32" [default: none, exact search
    /// on this crate's own flat kernels]
    #[arg(long, value_name = "S", conflicts_with = "threshold")]
    pub string_factory: Option<String>,

    /// Search-time parameters of the faiss index, faiss's syntax: e.g. "nprobe=16" (IVF),
    /// "efSearch=64" (HNSW), "nprobe=16,k_factor_rf=4" (IVF…,RFlat)
    #[arg(long, value_name = "NAME=V,..", conflicts_with = "threshold")]
    pub search_params: Option<String>,

    /// Query rows per search batch
    #[arg(long, value_name = "N", default_value_t = 50, allow_negative_numbers = true)]
    pub search_batch_size: usize,

    /// Arithmetic of the products: auto (the fastest exact path), f32, bf16, int8, tf32 or f16.
    /// On the CPU the lists are exact at every precision: bf16 candidates (AVX-512 BF16) and
    /// int8 candidates (AVX-512 VNNI, AVX-VNNI or AVX2) are proven with their error bound and rows it
    /// cannot prove are searched again in f32; auto takes int8 (AVX-512 VNNI or AVX-VNNI) or bf16 for
    /// the self-join where the CPU has them and a sample predicts the proofs hold; tf32 and f16
    /// (and bf16 or int8 without their instructions) run as f32. FAISS_NN_CPU=avx2 keeps
    /// the kernels at AVX2 + FMA (off AVX-512 and AVX-VNNI), avxvnni at AVX2 + FMA and AVX-VNNI
    /// (off AVX-512), generic off any SIMD.
    /// On a GPU auto and int8 are f32; bf16 and f16 candidates are proven with the tensor cores'
    /// error bound and the rows it cannot prove searched again in f32 on the CPU; tf32 gives its
    /// own lists, re-scored but unproven
    #[arg(long, value_name = "auto|f32|bf16|int8|tf32|f16", default_value = "auto", value_parser = parse_precision)]
    pub precision: Precision,

    /// Return the lists of reduced-precision products (bf16, f16, int8; and those auto plans in
    /// bf16 or int8 on the CPU) re-scored exactly but unproven: no row is searched again, so a
    /// list may miss a neighbour (approximate). f32 lists stay exact
    #[arg(long)]
    pub approximate: bool,

    /// Replace the output columns (nn_indices / nn_scores, or dup_group / keep) of an input that
    /// already has them (the output of an earlier run); without it such an input is refused
    #[arg(long)]
    pub overwrite: bool,

    /// No progress bar, no summary and no warnings from faiss on stderr (errors are still shown)
    #[arg(long, short)]
    pub quiet: bool,
}

/// A `--device` value as parsed, with the spelling given (reported as given: `-2` is every GPU,
/// and is shown as `-2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceArg {
    /// What the user wrote, trimmed.
    pub given: String,
    /// What it means.
    pub device: Device,
}

impl std::fmt::Display for DeviceArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.device {
            Device::AllCuda => write!(f, "{} (every GPU)", self.given),
            _ => write!(f, "{}", self.device),
        }
    }
}

fn parse_device(s: &str) -> faiss_nn::Result<DeviceArg> {
    Ok(DeviceArg { given: s.trim().to_owned(), device: s.parse()? })
}

fn parse_precision(s: &str) -> faiss_nn::Result<Precision> {
    s.parse()
}

/// A `--keep` value: which row a duplicate group keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepArg {
    /// The lowest row number.
    First,
    /// The largest value of the column.
    Max(String),
    /// The smallest value of the column.
    Min(String),
}

fn parse_keep(s: &str) -> Result<KeepArg, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("first") {
        return Ok(KeepArg::First);
    }
    let column = |rest: &str| -> Result<String, String> {
        if rest.is_empty() {
            Err(format!("{s:?}: name the column after the colon, e.g. max:text"))
        } else {
            Ok(rest.to_owned())
        }
    };
    match t.split_once(':') {
        Some((how, rest)) if how.eq_ignore_ascii_case("max") => column(rest).map(KeepArg::Max),
        Some((how, rest)) if how.eq_ignore_ascii_case("min") => column(rest).map(KeepArg::Min),
        _ => Err(format!("{s:?}: expected first, max:COLUMN or min:COLUMN")),
    }
}

impl Args {
    /// True when the run is the bundled demo that prints instead of writing: neither `--input`
    /// nor `--output` given.
    pub fn is_demo_display(&self) -> bool {
        self.input.is_none() && self.output.is_none()
    }

    /// The `k` to use: as given, else 3 for the printed demo and 1 otherwise.
    pub fn k(&self) -> usize {
        self.k.unwrap_or(if self.is_demo_display() { 3 } else { 1 })
    }

    /// The metric: as given, else cosine for a dedup (`--threshold`) and L2 otherwise.
    pub fn metric(&self) -> Metric {
        self.metric.unwrap_or(if self.threshold.is_some() { Metric::Cosine } else { Metric::L2 })
    }

    /// The process's flags, parsed and checked ([`Args::try_parse_checked`]); a bad one exits
    /// with clap's message and status 2.
    pub fn parse_checked() -> Self {
        Self::try_parse_checked(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Parses `argv` and refuses the dedup-only flags without `--threshold`. Their `requires`
    /// alone does not: clap drops a requirement on an argument that conflicts with one given
    /// (`--k`, `--string-factory`), and such a run would succeed without the pairs file asked for.
    pub fn try_parse_checked<I, T>(argv: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args = Self::try_parse_from(argv)?;
        if args.threshold.is_none() {
            let given = [("--keep", args.keep.is_some()), ("--pairs", args.pairs.is_some()), ("--max-pairs", args.max_pairs.is_some())];
            if let Some((flag, _)) = given.iter().find(|(_, on)| *on) {
                let msg = format!("{flag} belongs to a dedup and needs --threshold T (without it the run searches k neighbours)");
                return Err(<Self as clap::CommandFactory>::command().error(clap::error::ErrorKind::MissingRequiredArgument, msg));
            }
        }
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_values() {
        let a = Args::try_parse_from(["faiss-nn"]).unwrap();
        assert!(a.is_demo_display());
        assert_eq!((a.k(), a.metric(), &a.device.device, a.search_batch_size, &a.column), (3, Metric::L2, &Device::Cpu, 50, &"embedding".to_owned()));
        let a = Args::try_parse_from(["faiss-nn", "--input", "x.npy", "--metric", "0", "--device", "-2", "--k", "4"]).unwrap();
        assert_eq!((a.k(), a.metric(), &a.device.device), (4, Metric::InnerProduct, &Device::AllCuda));
        assert_eq!(a.device.to_string(), "-2 (every GPU)");
        let a = Args::try_parse_from(["faiss-nn", "--output", "o.parquet", "--device", "0,1"]).unwrap();
        assert_eq!((a.k(), a.device.device), (1, Device::Cuda(vec![0, 1])));
        let e = Args::try_parse_from(["faiss-nn", "--metric", "99"]).unwrap_err().to_string();
        assert!(e.contains("99") && e.contains("not a faiss metric"), "{e}");
        for (name, metric) in
            [("BrayCurtis", Metric::BrayCurtis), ("canberra", Metric::Canberra), ("jensen-shannon", Metric::JensenShannon), ("cosine", Metric::Cosine)]
        {
            assert_eq!(Args::try_parse_from(["faiss-nn", "--metric", name]).unwrap().metric(), metric);
        }
        let e = Args::try_parse_from(["faiss-nn", "--device", "abc"]).unwrap_err().to_string();
        assert!(e.contains("invalid device"), "{e}");
        assert_eq!(Args::try_parse_from(["faiss-nn", "--device", "cuda:1"]).unwrap().device.device, Device::Cuda(vec![1]));
    }

    #[test]
    fn dedup_flags() {
        let a = Args::try_parse_from(["faiss-nn", "--threshold", "0.9"]).unwrap();
        assert_eq!((a.metric(), a.keep.clone()), (Metric::Cosine, None), "cosine by default for a dedup");
        let a = Args::try_parse_from(["faiss-nn", "--threshold", "2", "--metric", "l2", "--keep", "max:text", "--max-pairs", "10"]).unwrap();
        assert_eq!((a.metric(), a.keep, a.max_pairs), (Metric::L2, Some(KeepArg::Max("text".into())), Some(10)));
        assert_eq!(Args::try_parse_from(["faiss-nn", "--threshold", "-0.5", "--keep", "MIN:n"]).unwrap().keep, Some(KeepArg::Min("n".into())));
        for bad in [
            &["--keep", "first"][..],
            &["--pairs", "p.parquet"],
            &["--max-pairs", "5"],
            &["--threshold", "0.9", "--k", "3"],
            &["--threshold", "0.9", "--string-factory", "HNSW32"],
            &["--threshold", "0.9", "--keep", "max:"],
            &["--threshold", "0.9", "--keep", "longest"],
        ] {
            let argv: Vec<&str> = std::iter::once("faiss-nn").chain(bad.iter().copied()).collect();
            assert!(Args::try_parse_checked(argv).is_err(), "{bad:?}");
        }
        // With a flag that conflicts with --threshold, clap alone lets these pass.
        for bad in [&["--k", "2", "--pairs", "p.parquet"][..], &["--string-factory", "HNSW8", "--keep", "first"], &["--k", "2", "--max-pairs", "5"]] {
            let argv: Vec<&str> = std::iter::once("faiss-nn").chain(bad.iter().copied()).collect();
            assert!(Args::try_parse_from(argv.clone()).is_ok(), "{bad:?}: clap refuses it now; the extra check may go");
            let e = Args::try_parse_checked(argv).unwrap_err();
            assert!(e.kind() == clap::error::ErrorKind::MissingRequiredArgument && e.to_string().contains("needs --threshold"), "{bad:?}: {e}");
        }
    }
}

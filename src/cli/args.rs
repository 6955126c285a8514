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
distances (ascending) or inner products (descending); an unfilled slot (an approximate index
that found fewer than k rows) has index -1 and score +/-inf, written as null in JSON; a warning
counts such rows. The file is written atomically: a failed or killed run leaves no output. The
output may not be the input file; a symbolic link as output has its target replaced.

Examples:
  faiss-nn
  faiss-nn --input docs.parquet --k 10
  faiss-nn --input vectors.npy --output nn.jsonl --metric ip --k 5
  faiss-nn --input docs.jsonl --column vec --string-factory IVF256,Flat --device 0,1";

/// For every row of an embedding dataset, its k nearest neighbours among the same rows.
#[derive(Debug, Clone, Parser)]
#[command(name = "faiss-nn", version, after_help = AFTER_HELP)]
pub struct Args {
    /// Input file: .parquet, .jsonl/.ndjson/.json (one object per line) or .npy (2-D float32,
    /// float64 or float16 array) [default: the bundled demo set]
    #[arg(long, value_name = "PATH")]
    pub input: Option<PathBuf>,

    /// Output file, .parquet or .jsonl/.ndjson/.json [default: <input stem>.nn.<input
    /// extension> next to the input, .nn.parquet for .npy input; replaced if it exists]
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Column (or JSON field) holding the embeddings: a list of numbers per row. For .npy input,
    /// the name the output gives the array's column
    #[arg(long, value_name = "NAME", default_value = "embedding")]
    pub column: String,

    /// Neighbours per row [default: 1, or 3 in the demo]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub k: Option<usize>,

    /// Distance: l2 (squared Euclidean), ip (inner product; for cosine, normalise the rows), l1,
    /// linf, canberra, braycurtis, jensenshannon, or a faiss METRIC_* integer (0 inner product,
    /// 1 L2, 2 L1, 3 Linf, 20 Canberra, 21 BrayCurtis, 22 JensenShannon)
    #[arg(long, value_name = "l2|ip|l1|linf|..|INT", default_value = "l2", allow_negative_numbers = true, value_parser = Metric::parse)]
    pub metric: Metric,

    /// Where to search: cpu, a CUDA device id, a list of ids (the data is sharded over them), or
    /// -1 for every GPU
    #[arg(long, value_name = "cpu|ID|ID,ID,..|-1", default_value = "cpu", allow_hyphen_values = true,
          value_parser = parse_device)]
    pub device: DeviceArg,

    /// faiss index factory string, e.g. "IVF256,Flat" or "HNSW32" [default: none, exact search
    /// on this crate's own flat kernels]
    #[arg(long, value_name = "S")]
    pub string_factory: Option<String>,

    /// Search-time parameters of the faiss index, faiss's syntax: e.g. "nprobe=16" (IVF),
    /// "efSearch=64" (HNSW), "nprobe=16,k_factor_rf=4" (IVF…,RFlat)
    #[arg(long, value_name = "NAME=V,..")]
    pub search_params: Option<String>,

    /// Query rows per search batch
    #[arg(long, value_name = "N", default_value_t = 50, allow_negative_numbers = true)]
    pub search_batch_size: usize,

    /// GPU arithmetic for the products: f32 (exact), tf32, f16 or bf16. The CPU always uses f32
    #[arg(long, value_name = "f32|tf32|f16|bf16", default_value = "f32", value_parser = parse_precision)]
    pub precision: Precision,

    /// Replace the nn_indices / nn_scores columns of an input that already has them (the
    /// output of an earlier run); without it such an input is refused
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_values() {
        let a = Args::try_parse_from(["faiss-nn"]).unwrap();
        assert!(a.is_demo_display());
        assert_eq!((a.k(), a.metric, &a.device.device, a.search_batch_size, &a.column), (3, Metric::L2, &Device::Cpu, 50, &"embedding".to_owned()));
        let a = Args::try_parse_from(["faiss-nn", "--input", "x.npy", "--metric", "0", "--device", "-2", "--k", "4"]).unwrap();
        assert_eq!((a.k(), a.metric, &a.device.device), (4, Metric::InnerProduct, &Device::AllCuda));
        assert_eq!(a.device.to_string(), "-2 (every GPU)");
        let a = Args::try_parse_from(["faiss-nn", "--output", "o.parquet", "--device", "0,1"]).unwrap();
        assert_eq!((a.k(), a.device.device), (1, Device::Cuda(vec![0, 1])));
        let e = Args::try_parse_from(["faiss-nn", "--metric", "99"]).unwrap_err().to_string();
        assert!(e.contains("99") && e.contains("not a faiss metric"), "{e}");
        for (name, metric) in [("BrayCurtis", Metric::BrayCurtis), ("canberra", Metric::Canberra), ("jensen-shannon", Metric::JensenShannon)] {
            assert_eq!(Args::try_parse_from(["faiss-nn", "--metric", name]).unwrap().metric, metric);
        }
        let e = Args::try_parse_from(["faiss-nn", "--metric", "cosine"]).unwrap_err().to_string();
        assert!(e.contains("normalise the rows and use ip"), "{e}");
        let e = Args::try_parse_from(["faiss-nn", "--device", "abc"]).unwrap_err().to_string();
        assert!(e.contains("invalid device"), "{e}");
    }
}

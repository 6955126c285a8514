//! The `faiss-nn` command: read a file, search, write the file back with the neighbour columns
//! (or, with no arguments, show the neighbours of a few rows of the bundled demo set).
//!
//! Failures print `error: <message>` (and any causes not already in it) to stderr and exit
//! with status 1; flag errors exit with status 2 (clap's convention); a bug ends with an
//! `error: internal error …` line and status 101, never a backtrace.

mod args;
mod bar;
mod dedup;
mod demo;
mod signals;

use args::Args;

use bar::Bar;
use faiss_nn::error::{Error, Result};
use faiss_nn::io::{self, Dataset, Format, Output};
use faiss_nn::neighbours::Neighbours;
use faiss_nn::step::FaissNearestNeighbour;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Rows the demo prints.
const DEMO_ROWS: usize = 5;

/// Parses the process's arguments, runs, and turns the outcome into an exit status.
pub(crate) fn main() -> ExitCode {
    // The default hook prints a backtrace when RUST_BACKTRACE is set; users get one line.
    std::panic::set_hook(Box::new(|info| {
        signals::unmute();
        eprintln!("error: internal error (a bug in faiss-nn, please report it): {info}");
    }));
    let args = Args::parse_checked();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

/// Prints an error and those of its causes that its message does not already include, with a
/// hint where a flag fixes it.
fn report(e: &Error) {
    eprintln!("error: {e}");
    match e {
        Error::MissingColumn { location, .. } if location == "keep" => {
            eprintln!("  hint: --keep max:COLUMN / min:COLUMN names one of the columns listed")
        }
        Error::MissingColumn { .. } => eprintln!("  hint: choose the embedding column with --column NAME"),
        _ => {}
    }
    let mut shown = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !shown.contains(&text) {
            eprintln!("  caused by: {text}");
        }
        shown = text;
        source = s.source();
    }
}

/// Runs the command for parsed arguments.
fn run(args: &Args) -> Result<()> {
    let input = match &args.input {
        Some(p) => p.clone(),
        None => demo_path()?,
    };
    let tag = if args.threshold.is_some() { "dedup" } else { "nn" };
    let output_path = match (&args.output, &args.input) {
        (Some(o), _) => Some(o.clone()),
        (None, Some(i)) => Some(default_output(i, tag)?),
        (None, None) => None,
    };
    // A threshold that cannot be right is refused before anything is read.
    if let Some(t) = args.threshold {
        faiss_nn::Threshold::new(args.metric(), t)?;
    }
    // Refused here already, before the search (Output::write refuses it too).
    if let Some(out) = &output_path {
        io::check_not_input(out, &input)?;
    }
    if let Some(pairs) = args.pairs.as_deref().filter(|p| io::same_file(p, &input)) {
        return Err(Error::invalid("pairs", format!("{} is the input file {}; write the pairs to another file", pairs.display(), input.display())));
    }
    // Handlers first, so that the temporary file is covered from the moment it exists.
    signals::install();
    // Checked before anything else, so that an unwritable destination fails fast.
    let output = output_path.as_deref().map(Output::create).transpose()?;
    let pairs_output = args.pairs.as_deref().map(Output::create).transpose()?;
    if let (Some(out), Some(pairs)) = (&output, &pairs_output) {
        if out.same_destination(pairs) {
            return Err(Error::invalid("pairs", format!("{} is also the output; write the pairs to another file", pairs.path().display())));
        }
    }

    let t = Instant::now();
    let mut data = io::read_embeddings(&input, &args.column)?;
    let added: &[&str] = if args.threshold.is_some() { &[io::DUP_GROUP, io::KEEP] } else { &[io::NN_INDICES, io::NN_SCORES] };
    if args.overwrite && !added.contains(&data.column.as_str()) {
        data.drop_columns(added)?;
    }
    if let Some(out) = &output {
        data.check_free(added)?;
        out.check_columns(&data)?;
    }
    let read_time = t.elapsed();
    if args.threshold.is_some() {
        let outputs = dedup::Outputs { path: output_path.as_deref(), table: output, pairs: pairs_output };
        return dedup::run(args, outputs, &data, read_time);
    }

    let k = args.k();
    let step = FaissNearestNeighbour::new()
        .device(args.device.device.clone())
        .string_factory(args.string_factory.as_deref())
        .search_params(args.search_params.as_deref())
        .metric(args.metric())
        .k(k)
        .search_batch_size(args.search_batch_size)
        .precision(args.precision)
        .approximate(args.approximate);
    if !args.quiet && args.approximate {
        use faiss_nn::Precision::{Auto, Bf16, Int8, F16};
        // What may compute in reduced precision: bf16 and f16 on a GPU; auto (where it plans
        // reduced products), bf16 and int8 on the CPU.
        let reduced = if args.device.device.is_gpu() { matches!(args.precision, Bf16 | F16) } else { matches!(args.precision, Auto | Bf16 | Int8) };
        if !reduced {
            let name = format!("{:?}", args.precision).to_lowercase();
            eprintln!("note: --approximate applies to reduced-precision products; --precision {name} computes in f32 here (or tf32), so it changes nothing");
        }
    }
    if !args.quiet && args.device.device.is_gpu() && matches!(args.precision, faiss_nn::Precision::Bf16 | faiss_nn::Precision::F16) {
        // Near the k limit the step may open the GPU in f32 (engine::options_for): say so.
        if let Ok(s) = step.strategy(data.n) {
            if s.precision == faiss_nn::Precision::F32 {
                let name = format!("{:?}", args.precision).to_lowercase();
                eprintln!(
                    "note: --precision {name} lists are proven with k + max(k/2, 8) candidates, and at k = {k} the GPU's k limit leaves \
                     less than half of that margin: the search computes in f32 (exact); --approximate keeps {name}"
                );
            }
        }
    }
    if !args.quiet && args.device.device.is_gpu() && args.precision == faiss_nn::Precision::Int8 {
        eprintln!("note: --precision int8 applies to CPU products; the GPU search computes in f32");
    }
    if !args.quiet && !args.device.device.is_gpu() {
        let name = format!("{:?}", args.precision).to_lowercase();
        match args.precision {
            faiss_nn::Precision::Tf32 | faiss_nn::Precision::F16 => {
                eprintln!("note: --precision {name} applies to GPU products; the CPU search computes in f32 (or bf16, int8: --precision auto|bf16|int8)")
            }
            faiss_nn::Precision::Bf16 if !faiss_nn::flat::cpu::bf16::native() => {
                eprintln!("note: no bf16 kernel runs here (the CPU has no AVX-512 BF16, or FAISS_NN_CPU keeps the kernels off it): the search computes in f32 (the lists are the same)")
            }
            faiss_nn::Precision::Int8 if data.d > faiss_nn::flat::cpu::int8::MAX_DEPTH => {
                eprintln!(
                    "note: int8 products handle at most {} dimensions (their integer sums must fit 32 bits): the search computes in f32 (the lists are the same)",
                    faiss_nn::flat::cpu::int8::MAX_DEPTH
                )
            }
            faiss_nn::Precision::Int8 if faiss_nn::flat::cpu::int8::Int8Kernel::detect() == faiss_nn::flat::cpu::int8::Int8Kernel::Portable => {
                eprintln!("note: no int8 kernel runs here (the CPU has no AVX2, or FAISS_NN_CPU keeps the kernels off it): the search computes in f32 (the lists are the same)")
            }
            _ => {}
        }
    }
    let bar = Bar::new(data.n, args.quiet);
    let t = Instant::now();
    // faiss prints its training warnings straight to the standard error.
    let mute = if args.quiet { signals::Mute::stderr() } else { None };
    let result = step.run_with_progress(&data.embeddings, data.d, &bar);
    drop(mute);
    bar.finish();
    let nn = result?;
    let search_time = t.elapsed();
    if !args.quiet {
        warn_unfilled(&nn);
    }

    let t = Instant::now();
    if let Some(out) = output {
        write_atomically(out, |out| out.write(&data, &nn))?;
    }
    let write_time = t.elapsed();

    let times = Times { read: read_time, search: search_time, write: write_time };
    match output_path {
        None => show_demo(args, &data, &nn, &times),
        Some(out) if !args.quiet => {
            eprintln!("{}", describe(args, &data, &format!("k = {k}")));
            eprintln!("read {}, searched {}, wrote {} in {}", secs(times.read), secs(times.search), out.display(), secs(times.write));
            Ok(())
        }
        Some(_) => Ok(()),
    }
}

/// Writes an output with `write`, its temporary file registered for removal on a signal from
/// before it exists until it is renamed into place.
fn write_atomically(mut out: Output, write: impl FnOnce(Output) -> Result<()>) -> Result<()> {
    let cleanup = begin_guarded(&mut out)?;
    let r = write(out);
    drop(cleanup);
    r
}

/// Creates `out`'s temporary file, registered for removal on a signal before it exists (a
/// signal in between must not leave it behind); the guard keeps it registered while alive.
pub(crate) fn begin_guarded(out: &mut Output) -> Result<Option<signals::TempGuard>> {
    let mut cleanup = None;
    out.begin_with(|path| {
        // A name found taken was not ours: its guard goes before the next name's is made.
        cleanup = None;
        cleanup = signals::TempGuard::register(path);
    })?;
    Ok(cleanup)
}

/// Says how many lists came back short (an approximate index that reached fewer than k rows:
/// few IVF lists probed, a small HNSW search): those slots hold index −1 in the output.
fn warn_unfilled(nn: &Neighbours) {
    let slots = nn.indices.iter().filter(|&&i| i < 0).count();
    if slots == 0 {
        return;
    }
    let rows = (0..nn.n).filter(|&i| nn.indices_of(i).iter().any(|&j| j < 0)).count();
    eprintln!(
        "warning: {rows} of {} rows have fewer than k = {} neighbours ({slots} of {} slots unfilled: index -1, score ±inf or null); \
         the index found no more rows: probe more (--search-params nprobe=… or efSearch=…), use fewer IVF lists, or a smaller k",
        nn.n,
        nn.k,
        nn.n * nn.k
    );
}

/// Wall-clock time of each phase.
pub(crate) struct Times {
    pub(crate) read: Duration,
    pub(crate) search: Duration,
    pub(crate) write: Duration,
}

pub(crate) fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// One line saying what was searched (`what`: "k = 3", "threshold 0.9"), and how.
pub(crate) fn describe(args: &Args, data: &Dataset, what: &str) -> String {
    let metric = args.metric();
    let order = if metric.is_similarity() { "larger is closer" } else { "smaller is closer" };
    let column = if data.format == Format::Npy { String::new() } else { format!(", column {:?}", data.column) };
    format!(
        "{}: {} rows × {} dims{column}; {what}, metric {:?} ({order}), device {}, {}",
        data.path.display(),
        data.n,
        data.d,
        metric,
        args.device,
        match (args.threshold, args.string_factory.as_deref()) {
            (Some(_), _) => "exact threshold join".to_owned(),
            (None, Some(f)) => format!("index {f}"),
            (None, None) => "index Flat (exact)".to_owned(),
        },
    ) + &args.search_params.as_deref().map(|p| format!(" ({p})")).unwrap_or_default()
}

/// The no-argument run: what was done, then a few rows with their neighbours, on stdout.
fn show_demo(args: &Args, data: &Dataset, nn: &Neighbours, times: &Times) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let mut print = || -> std::io::Result<()> {
        writeln!(out, "faiss-nn demo: the k nearest neighbours of every row of the bundled data set")?;
        writeln!(out, "{}", describe(args, data, &format!("k = {}", nn.k)))?;
        writeln!(out, "read in {}, searched in {}; nothing written\n", secs(times.read), secs(times.search))?;
        demo::print_neighbours(&mut out, data, nn, &demo::sample_rows(data.n, DEMO_ROWS))?;
        writeln!(out, "To search your own data: faiss-nn --input FILE [--output FILE] [--k N] (see --help)")
    };
    match print() {
        Ok(()) => Ok(()),
        // A closed pipe (`faiss-nn | head`) is not a failure of the search.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(source) => Err(Error::Io { action: "cannot write".into(), path: "<stdout>".into(), source }),
    }
}

/// The demo set: next to the sources this binary was built from, else `./data/demo.parquet`.
fn demo_path() -> Result<PathBuf> {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join("demo.parquet");
    let local = Path::new("data").join("demo.parquet");
    [built.clone(), local.clone()].into_iter().find(|p| p.is_file()).ok_or_else(|| {
        Error::invalid("input", format!("no --input given and the demo data set is at neither {} nor {}; pass --input FILE", built.display(), local.display()))
    })
}

/// `<dir>/<stem>.<tag>.<ext>` (tag `nn`, or `dedup` for a dedup): the input's extension, or
/// `parquet` for `.npy` input.
fn default_output(input: &Path, tag: &str) -> Result<PathBuf> {
    let ext = match Format::from_path(input)? {
        Format::Npy => "parquet".to_owned(),
        _ => input.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default(),
    };
    let stem = input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(input.with_file_name(format!("{stem}.{tag}.{ext}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_output_names() {
        assert_eq!(default_output(Path::new("d/x.parquet"), "nn").unwrap(), Path::new("d/x.nn.parquet"));
        assert_eq!(default_output(Path::new("x.v1.JSONL"), "nn").unwrap(), Path::new("x.v1.nn.JSONL"));
        assert_eq!(default_output(Path::new("/a/m.npy"), "nn").unwrap(), Path::new("/a/m.nn.parquet"));
        assert_eq!(default_output(Path::new("d/x.jsonl"), "dedup").unwrap(), Path::new("d/x.dedup.jsonl"));
        assert!(default_output(Path::new("m.csv"), "nn").is_err());
    }
}

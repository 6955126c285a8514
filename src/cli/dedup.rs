//! `--threshold`: dedup by the exact threshold join. Every pair of rows whose score passes the
//! threshold joins their rows into one group (a union-find while the pairs stream out); each
//! group keeps one row by `--keep`. Writes the input with `dup_group` and `keep`, and with
//! `--pairs` the pair list; both files are complete before either is renamed into place.

use super::args::{Args, KeepArg};
use super::bar::Bar;
use super::{begin_guarded, demo, describe, secs};
use faiss_nn::dedup::{Groups, Keep, UnionFind};
use faiss_nn::error::Result;
use faiss_nn::io::{Dataset, Output};
use faiss_nn::range::{Pair, Pairs, RangeJoin};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Duplicate groups the no-output demo prints, at most.
const DEMO_GROUPS: usize = 5;
/// Members of a group the demo prints, at most.
const DEMO_MEMBERS: usize = 4;

/// Where a dedup writes: the table (`None` for the printed demo) and the pair list.
pub(crate) struct Outputs<'a> {
    pub path: Option<&'a Path>,
    pub table: Option<Output>,
    pub pairs: Option<Output>,
}

/// Runs the dedup of `data` as `args` say and writes (or, for the demo, prints) the result.
pub(crate) fn run(args: &Args, outputs: Outputs<'_>, data: &Dataset, read_time: Duration) -> Result<()> {
    let threshold = args.threshold.expect("a dedup has a threshold");
    let keep = match &args.keep {
        None | Some(KeepArg::First) => Keep::First,
        Some(KeepArg::Max(column)) => Keep::Largest(data.rank_values(column)?),
        Some(KeepArg::Min(column)) => Keep::Smallest(data.rank_values(column)?),
    };
    if !args.quiet && args.device.device.is_gpu() {
        eprintln!("note: the threshold join runs on the CPU (this crate has no GPU threshold join); --device is not used");
    }
    let mut join = RangeJoin::new(threshold).metric(args.metric());
    if let Some(m) = args.max_pairs {
        join = join.max_pairs(m);
    }
    let collect = outputs.pairs.is_some();
    let bar = Bar::new(data.n, args.quiet);
    let t = Instant::now();
    let mut uf = UnionFind::new(data.n);
    let mut found: Vec<Pair> = Vec::new();
    let mut count = 0usize;
    let result = join.stream(&data.embeddings, data.d, &bar, &mut |batch: &[Pair]| {
        count += batch.len();
        for p in batch {
            uf.union(p.i as usize, p.j as usize);
        }
        if collect {
            found.extend_from_slice(batch);
        }
        Ok(())
    });
    bar.finish();
    result?;
    let groups = Groups::from_union_find(&mut uf, &keep, count)?;
    let search_time = t.elapsed();

    let t = Instant::now();
    let Outputs { path, table, pairs } = outputs;
    // Both files are written in full under temporary names, then renamed one after the other.
    let mut guards = Vec::new();
    let mut written = Vec::new();
    if let Some(mut out) = pairs {
        guards.push(begin_guarded(&mut out)?);
        out.fill_pairs(&Pairs::from_unsorted(std::mem::take(&mut found)), &data.path)?;
        written.push(out);
    }
    if let Some(mut out) = table {
        guards.push(begin_guarded(&mut out)?);
        out.fill_groups(data, &groups)?;
        written.push(out);
    }
    // The pairs first, the table last: should the table's rename fail, the pairs go too.
    let mut committed: Vec<std::path::PathBuf> = Vec::new();
    for out in written {
        let path = out.target().to_path_buf();
        if let Err(e) = out.commit() {
            committed.iter().for_each(|p| drop(std::fs::remove_file(p)));
            return Err(e);
        }
        committed.push(path);
    }
    drop(guards);
    let write_time = t.elapsed();

    let what = format!("threshold {threshold}");
    match path {
        None => show_groups(args, data, &groups, &what, read_time, search_time),
        Some(out) if !args.quiet => {
            eprintln!("{}", describe(args, data, &what));
            eprintln!(
                "{} pairs pass; {} duplicate groups; kept {} of {} rows, {} removed",
                groups.pairs,
                groups.duplicate_groups(),
                groups.kept(),
                data.n,
                groups.removed()
            );
            let also = args.pairs.as_deref().map(|p| format!(" and {}", p.display())).unwrap_or_default();
            eprintln!("read {}, joined {}, wrote {}{also} in {}", secs(read_time), secs(search_time), out.display(), secs(write_time));
            Ok(())
        }
        Some(_) => Ok(()),
    }
}

/// The demo's dedup: the largest duplicate groups, each row with its label, on stdout.
fn show_groups(args: &Args, data: &Dataset, groups: &Groups, what: &str, read: Duration, search: Duration) -> Result<()> {
    let mut members: std::collections::BTreeMap<i64, Vec<usize>> = std::collections::BTreeMap::new();
    for (r, &g) in groups.group.iter().enumerate() {
        members.entry(g).or_default().push(r);
    }
    let mut dup: Vec<Vec<usize>> = members.into_values().filter(|m| m.len() > 1).collect();
    // Largest first, then by the kept row.
    dup.sort_by(|a, b| b.len().cmp(&a.len()).then(a[0].cmp(&b[0])));
    let columns = demo::label_columns(data);
    let mut out = std::io::stdout().lock();
    let mut print = || -> std::io::Result<()> {
        writeln!(out, "faiss-nn demo: duplicate groups of the bundled data set")?;
        writeln!(out, "{}", describe(args, data, what))?;
        let written = match &args.pairs {
            Some(p) => format!("pairs written to {}", p.display()),
            None => "nothing written".to_owned(),
        };
        writeln!(out, "read in {}, joined in {}; {written}", secs(read), secs(search))?;
        writeln!(out, "{} pairs pass; {} duplicate groups; {} of {} rows would be kept\n", groups.pairs, dup.len(), groups.kept(), data.n)?;
        for m in dup.iter().take(DEMO_GROUPS) {
            let kept = groups.group[m[0]] as usize;
            writeln!(out, "group of {} rows, keeps row {kept}", m.len())?;
            for &r in m.iter().take(DEMO_MEMBERS) {
                let mark = if r == kept { "keep" } else { "drop" };
                writeln!(out, "  {mark}  row {r:>5}  {}", demo::label(data, &columns, r))?;
            }
            if m.len() > DEMO_MEMBERS {
                writeln!(out, "  … and {} more", m.len() - DEMO_MEMBERS)?;
            }
            writeln!(out)?;
        }
        writeln!(out, "To dedup your own data: faiss-nn --input FILE --threshold T [--keep max:COLUMN] [--pairs FILE] (see --help)")
    };
    match print() {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(source) => Err(faiss_nn::Error::Io { action: "cannot write".into(), path: "<stdout>".into(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faiss_nn::NoProgress;

    #[test]
    fn groups_from_a_stream_equal_groups_from_the_collected_pairs() {
        // The CLI's union-find over streamed batches and the library's from_pairs agree.
        let rows: Vec<f32> = (0..60).flat_map(|i| [((i / 3) as f32).cos(), ((i / 3) as f32).sin() + (i % 3) as f32 * 1e-4]).collect();
        let join = RangeJoin::new(0.999);
        let pairs = join.run(&rows, 2).unwrap();
        let mut uf = UnionFind::new(60);
        let mut count = 0;
        join.stream(&rows, 2, &NoProgress, &mut |b: &[Pair]| {
            count += b.len();
            b.iter().for_each(|p| uf.union(p.i as usize, p.j as usize));
            Ok(())
        })
        .unwrap();
        let streamed = Groups::from_union_find(&mut uf, &Keep::First, count).unwrap();
        let collected = Groups::from_pairs(60, pairs.i.iter().copied().zip(pairs.j.iter().copied()), &Keep::First).unwrap();
        assert_eq!(streamed, collected);
        assert!(streamed.duplicate_groups() >= 10, "{streamed:?}");
    }
}

//! Printing some rows next to their neighbours, labelled by the table's text columns: what the
//! no-argument demo shows instead of writing a file.

use arrow_array::cast::AsArray;
use arrow_array::Array;
use arrow_schema::DataType;
use faiss_nn::io::Dataset;
use faiss_nn::neighbours::Neighbours;
use std::io::{self, Write};

/// Label width in characters; a label is cut there so that each neighbour fits one line.
const LABEL_CHARS: usize = 70;

/// The string columns used as labels: the first two, other than the embedding column.
pub(crate) fn label_columns(data: &Dataset) -> Vec<usize> {
    let is_text = |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let fields = data.schema.fields();
    (0..fields.len()).filter(|&i| is_text(fields[i].data_type()) && fields[i].name() != &data.column).take(2).collect()
}

fn string_at(array: &dyn Array, i: usize) -> Option<String> {
    if array.is_null(i) {
        return None;
    }
    match array.data_type() {
        DataType::Utf8 => Some(array.as_string::<i32>().value(i).to_owned()),
        DataType::LargeUtf8 => Some(array.as_string::<i64>().value(i).to_owned()),
        DataType::Utf8View => Some(array.as_string_view().value(i).to_owned()),
        _ => None,
    }
}

/// Row `row`'s label: its text columns joined by " — ", on one line, cut to [`LABEL_CHARS`].
pub(crate) fn label(data: &Dataset, columns: &[usize], row: usize) -> String {
    let Some((batch, i)) = data.locate(row) else { return String::new() };
    let parts: Vec<String> = columns.iter().filter_map(|&c| string_at(batch.column(c).as_ref(), i)).collect();
    let text = parts.join(" — ").split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() <= LABEL_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(LABEL_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// Prints each of `rows` with its neighbours and their scores.
pub(crate) fn print_neighbours(out: &mut dyn Write, data: &Dataset, nn: &Neighbours, rows: &[usize]) -> io::Result<()> {
    let columns = label_columns(data);
    let width = data.n.saturating_sub(1).to_string().len();
    for &r in rows {
        writeln!(out, "row {r:>width$}  {}", label(data, &columns, r))?;
        for (rank, (&j, &s)) in nn.indices_of(r).iter().zip(nn.scores_of(r)).enumerate() {
            if j < 0 {
                writeln!(out, "  {}. (no neighbour found)", rank + 1)?;
                continue;
            }
            writeln!(out, "  {}. {s:>8.4}  row {j:>width$}  {}", rank + 1, label(data, &columns, j as usize))?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// `count` rows spread evenly over `0..n`.
pub(crate) fn sample_rows(n: usize, count: usize) -> Vec<usize> {
    let count = count.min(n);
    (0..count).map(|i| i * n / count).collect()
}

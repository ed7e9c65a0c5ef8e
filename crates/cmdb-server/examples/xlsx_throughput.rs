//! How fast rust_xlsxwriter alone writes a constant-memory sheet on this machine: the floor under
//! the audit workbook's time, with no database and no rebuilding.
//!
//! Writes ROWS rows of a Memory-sheet-like table (11 cells: 5 numbers, 5 texts, a flag; the texts
//! made the way the workbook makes them, one `String` per cell), then saves at compression level 1
//! as the workbook does, and prints the time per cell of each phase.
//!
//! ```text
//! cargo run --release -p cmdb-server --example xlsx_throughput -- 1000000
//! ```
//!
//! The audit workbook at 100,000 assets holds about 23 million cells (100,000 asset rows of 28
//! cells, 1.8 million component rows of about 10, 84,000 change rows of 14): multiply.

use std::time::Instant;

use anyhow::{Context, Result};
use rust_xlsxwriter::Workbook;

/// The server's allocator, so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CELLS_PER_ROW: u64 = 11;

fn main() -> Result<()> {
    let rows: u32 = match std::env::args().nth(1) {
        Some(n) => n.parse().context("the first argument is a number of rows")?,
        None => 1_000_000,
    };
    let file = tempfile::NamedTempFile::new().context("a temporary file")?;
    let started = Instant::now();
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet_with_constant_memory().context("a sheet")?;
    for r in 1..=rows {
        let i = u64::from(r);
        sheet.write_number(r, 0, i as f64)?;
        sheet.write_string(r, 1, format!("web-{i:06}.dc1.example"))?;
        sheet.write_string(r, 2, format!("A{}", i % 8))?;
        sheet.write_number(r, 3, 32.0)?;
        sheet.write_number(r, 4, 32768.0)?;
        sheet.write_string(r, 5, "DDR4".to_owned())?;
        sheet.write_number(r, 6, 3200.0)?;
        sheet.write_string(r, 7, "Samsung".to_owned())?;
        sheet.write_string(r, 8, format!("M{i:07}3"))?;
        sheet.write_string(r, 9, "M393A4K40DB3-CWE".to_owned())?;
        sheet.write_boolean(r, 10, true)?;
    }
    let written = started.elapsed();
    workbook.set_zip_compression_level(1);
    workbook.save(file.path()).context("saving")?;
    let saved = started.elapsed() - written;
    let cells = u64::from(rows) * CELLS_PER_ROW;
    let bytes = file.as_file().metadata().map(|m| m.len()).unwrap_or(0);
    let per_cell = |d: std::time::Duration| d.as_nanos() as f64 / cells as f64;
    println!(
        "{rows} rows, {cells} cells: cells written in {:.2} s ({:.0} ns a cell), saved in {:.2} s ({:.0} ns a cell), {bytes} bytes",
        written.as_secs_f64(),
        per_cell(written),
        saved.as_secs_f64(),
        per_cell(saved)
    );
    Ok(())
}

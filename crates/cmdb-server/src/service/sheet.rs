//! A spreadsheet as the import reads it: a header row and data rows of typed cells, from CSV
//! (every cell text) or from a workbook (XLSX as Excel and LibreOffice write it, read with
//! calamine: numbers, dates and booleans keep their type, so a date cell is a date whatever the
//! display format of the machine that wrote it).

use chrono::NaiveDate;

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub enum SheetCell {
    /// Nothing.
    Empty,
    /// Text (trimmed).
    Text(String),
    /// A number cell.
    Number(f64),
    /// A date (or date-time) cell: its calendar date.
    Date(NaiveDate),
    /// A boolean cell.
    Bool(bool),
    /// An error cell (`#N/A`, `#REF!`): what it says.
    Error(String),
}

impl SheetCell {
    /// True for an empty cell or blank text.
    pub fn is_empty(&self) -> bool {
        match self {
            SheetCell::Empty => true,
            SheetCell::Text(t) => t.trim().is_empty(),
            _ => false,
        }
    }

    /// The cell as text a field reads: numbers without a needless `.0` (a cabinet U of 12 is
    /// "12"), dates as `YYYY-MM-DD`.
    pub fn text(&self) -> String {
        match self {
            SheetCell::Empty => String::new(),
            SheetCell::Text(t) => t.clone(),
            SheetCell::Number(n) => number_text(*n),
            SheetCell::Date(d) => d.format("%Y-%m-%d").to_string(),
            SheetCell::Bool(b) => b.to_string(),
            SheetCell::Error(e) => e.clone(),
        }
    }
}

/// A number as the shortest decimal text that reads back as the same double (Rust's `{}` for
/// f64), without a trailing `.0`: 1299.5 stays "1299.5", 12.0 is "12".
pub fn number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 { format!("{}", n as i64) } else { format!("{n}") }
}

/// A sheet: its header and its data rows, each with the line (row) number a person sees.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sheet {
    /// Header cells as text, in column order.
    pub headers: Vec<String>,
    /// (line number, cells) of every data row that is not blank.
    pub rows: Vec<(u64, Vec<SheetCell>)>,
}

/// Why a file cannot be read as a sheet at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SheetError(pub String);

/// Cell text as the CSV export wrote it: the `'` that defuses a formula is removed again.
fn csv_cell(raw: &str) -> SheetCell {
    let trimmed = raw.trim();
    let text = match trimmed.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
        _ => trimmed,
    };
    if text.is_empty() { SheetCell::Empty } else { SheetCell::Text(text.to_owned()) }
}

/// Reads CSV (UTF-8, an optional BOM). A malformed record is an error naming its line.
pub fn from_csv(body: &[u8], max_rows: usize) -> Result<Sheet, SheetError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    std::str::from_utf8(body).map_err(|e| SheetError(format!("the file is not UTF-8: {e}")))?;
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(body);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| SheetError(format!("cannot read the header: {e}")))?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            SheetError(format!("line {line}: malformed CSV: {e}"))
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let cells: Vec<SheetCell> = record.iter().map(csv_cell).collect();
        if cells.iter().all(SheetCell::is_empty) {
            continue;
        }
        if rows.len() >= max_rows {
            return Err(SheetError(format!("more than {max_rows} rows; split the file")));
        }
        rows.push((line, cells));
    }
    Ok(Sheet { headers, rows })
}

/// Reads the first worksheet of a workbook (XLSX, XLSM, XLS, ODS). Row 1 is the header; rows are
/// numbered as the spreadsheet numbers them.
pub fn from_workbook(body: &[u8], max_rows: usize) -> Result<Sheet, SheetError> {
    use calamine::{Data, Reader, open_workbook_auto_from_rs};
    let mut workbook = open_workbook_auto_from_rs(std::io::Cursor::new(body))
        .map_err(|e| SheetError(format!("not a spreadsheet cmdb can read (XLSX, XLS, ODS): {e}")))?;
    let range = workbook
        .worksheet_range_at(0)
        .ok_or_else(|| SheetError("the workbook has no worksheet".to_owned()))?
        .map_err(|e| SheetError(format!("cannot read the first worksheet: {e}")))?;
    // Row numbers as the spreadsheet shows them: the range may start below row 1.
    let first_row = u64::from(range.start().map_or(0, |(row, _)| row)) + 1;
    let mut lines = range.rows();
    let headers: Vec<String> = match lines.next() {
        Some(cells) => cells.iter().map(|c| c.to_string().trim().to_owned()).collect(),
        None => return Err(SheetError("the first worksheet is empty".to_owned())),
    };
    let mut rows = Vec::new();
    for (offset, cells) in lines.enumerate() {
        let line = first_row + 1 + offset as u64;
        let cells: Vec<SheetCell> = cells
            .iter()
            .map(|cell| match cell {
                Data::Empty => SheetCell::Empty,
                Data::String(s) if s.trim().is_empty() => SheetCell::Empty,
                Data::String(s) => SheetCell::Text(s.trim().to_owned()),
                Data::Int(n) => SheetCell::Number(*n as f64),
                Data::Float(n) => SheetCell::Number(*n),
                Data::Bool(b) => SheetCell::Bool(*b),
                Data::DateTime(dt) => match dt.as_datetime() {
                    Some(at) if dt.is_datetime() => SheetCell::Date(at.date()),
                    _ => SheetCell::Number(dt.as_f64()),
                },
                Data::DateTimeIso(text) => {
                    match text.get(..10).and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()) {
                        Some(date) => SheetCell::Date(date),
                        None => SheetCell::Text(text.clone()),
                    }
                }
                Data::DurationIso(text) => SheetCell::Text(text.clone()),
                Data::Error(e) => SheetCell::Error(format!("the cell holds the error {e}")),
            })
            .collect();
        if cells.iter().all(SheetCell::is_empty) {
            continue;
        }
        if rows.len() >= max_rows {
            return Err(SheetError(format!("more than {max_rows} rows; split the file")));
        }
        rows.push((line, cells));
    }
    Ok(Sheet { headers, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_typed_them() {
        assert_eq!(number_text(12.0), "12");
        assert_eq!(number_text(1299.5), "1299.5");
        assert_eq!(number_text(0.1 + 0.2), "0.30000000000000004", "a float cell is what Excel stored");
        assert_eq!(SheetCell::Date(NaiveDate::from_ymd_opt(2024, 3, 1).expect("date")).text(), "2024-03-01");
    }

    #[test]
    fn csv_cells_lose_the_formula_guard() {
        let sheet = from_csv("\u{feff}Hostname,owner\nweb-01,'=ops\n,\n".as_bytes(), 10).expect("csv");
        assert_eq!(sheet.headers, ["Hostname", "owner"]);
        assert_eq!(sheet.rows, vec![(2, vec![SheetCell::Text("web-01".into()), SheetCell::Text("=ops".into())])]);
        assert!(from_csv(b"a,b\n1\n", 10).expect_err("ragged").0.contains("line 2"));
        assert!(from_workbook(b"not a workbook", 10).is_err());
    }
}

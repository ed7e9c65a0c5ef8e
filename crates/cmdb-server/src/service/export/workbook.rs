//! Workbooks of typed tables (XLSX), for the list export, the audit workbook, the import template
//! and the stocktake report.
//!
//! The package (workbook, styles, sheet list, autofilter names, plain sheets such as "About") is
//! rust_xlsxwriter's. The table sheets' XML is written here, row by row, straight into a deflate
//! stream of its own (a one-entry ZIP in an anonymous temporary file per sheet), and copied into
//! the package at the end without being compressed again. Why: rust_xlsxwriter's constant-memory
//! sheet costs about 300 ns a cell (each cell goes through a map, a shared string, two escaping
//! passes and `write!`) plus a serial compression pass at save; the audit workbook at 100,000
//! assets has 23 million cells, so that alone was over 8 s of a 5 s target
//! (`examples/xlsx_throughput` measures it). Here a cell is a few appends to a buffer (about 40 ns,
//! about 80 with its compression, measured with a stand-alone copy of this loop on the example's
//! rows), and the temporary files hold compressed XML (150 MB, not 1 GB, for that workbook).
//!
//! A table sheet has a bold, frozen header row, columns as wide as their headers and an autofilter
//! over its rows; it holds at most [`MAX_SHEET_ROWS`] rows, and a longer table continues on
//! "Changes 2", "Changes 3", ... Text is written as inline strings, never formulas; times as Excel
//! date-times of the configured zone.

use std::fs::File;
use std::io::{Cursor, Seek, Write};

use chrono_tz::Tz;
use rust_xlsxwriter::{ExcelDateTime, Format, Workbook, Worksheet};
use zip::write::SimpleFileOptions;
use zip::{ZipArchive, ZipWriter};

use super::cell::Cell;
use crate::service::ServiceError;

/// Rows per sheet, the header included (Excel's limit is 1,048,576).
pub const MAX_SHEET_ROWS: u32 = 1_048_576;

/// Longest text a cell holds (Excel's limit, in UTF-16 units); longer values are cut in XLSX,
/// never in CSV.
pub(super) const MAX_CELL_CHARS: usize = 32_767;

/// Excel's last column (XFD).
const MAX_COLUMNS: usize = 16_384;

/// The style of header cells (bold): the first format registered in every [`Book`].
const HEADER_STYLE: u32 = 1;
/// The style of date-time cells: the second format registered in every [`Book`].
const TIME_STYLE: u32 = 2;

/// XML of a table sheet is handed to its compressor in pieces of about this size.
const FLUSH_BYTES: usize = 256 * 1024;

/// A failure of rust_xlsxwriter or of the ZIP writer: never the request's fault.
fn workbook_error(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Bug(format!("cannot write the workbook: {e}"))
}

/// A workbook of tables and plain sheets. Tables may be written alternately; within a table rows
/// are written in order.
pub(super) struct Book {
    /// The package, with the plain sheets and a placeholder for every table sheet.
    skeleton: Workbook,
    tables: Vec<TableState>,
    /// Every table sheet, in the order they were added.
    sheets: Vec<TableSheet>,
    /// Headers that name no time column whatever they end in (custom fields such as
    /// `disposed_at`, a date): kept as they are, so the sheet imports back.
    pub(super) plain: Vec<String>,
    bold: Format,
    time: Format,
    tz: Tz,
    /// Rows per sheet (the header included); [`MAX_SHEET_ROWS`] but in tests.
    max_rows: u32,
}

struct TableState {
    name: String,
    headers: Vec<String>,
    /// Sheets this table has started.
    sheets: usize,
    /// Its current sheet, an index into [`Book::sheets`].
    current: usize,
}

/// A table sheet: its place among the workbook's sheets and its rows.
struct TableSheet {
    /// Index of its placeholder among the skeleton's worksheets.
    position: usize,
    rows: SheetStream,
}

impl Book {
    pub(super) fn new(tz: Tz) -> Book {
        let bold = Format::new().set_bold();
        let time = Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");
        let mut skeleton = Workbook::new();
        // Formats are numbered in the order they are registered, after the default (0): the
        // table sheets' XML names these two by number (checked by a test on the styles written).
        skeleton.register_format(&bold);
        skeleton.register_format(&time);
        Book {
            skeleton,
            tables: Vec::new(),
            sheets: Vec::new(),
            plain: Vec::new(),
            bold,
            time,
            tz,
            max_rows: MAX_SHEET_ROWS,
        }
    }

    /// Adds a table; returns its handle for [`Book::row`].
    pub(super) fn table<S: AsRef<str>>(&mut self, name: &str, headers: &[S]) -> Result<usize, ServiceError> {
        if headers.len() > MAX_COLUMNS {
            return Err(ServiceError::Bug(format!("the sheet {name} would have more than {MAX_COLUMNS} columns")));
        }
        self.tables.push(TableState {
            name: name.to_owned(),
            // Time columns (named `*_at`) hold wall-clock date-times of the zone, which Excel cannot
            // carry in the cell, so the header names it.
            headers: headers
                .iter()
                .map(|h| h.as_ref())
                .map(|h| {
                    if h.ends_with("_at") && !self.plain.iter().any(|p| p == h) {
                        format!("{h} ({})", self.tz.name())
                    } else {
                        h.to_owned()
                    }
                })
                .collect(),
            sheets: 0,
            current: 0,
        });
        let t = self.tables.len() - 1;
        self.new_sheet(t)?;
        Ok(t)
    }

    /// Adds a plain sheet (rust_xlsxwriter's, filled with [`Book::fill_plain_sheet`]);
    /// returns its index.
    pub(super) fn add_plain_sheet(&mut self, name: &str) -> Result<usize, ServiceError> {
        self.skeleton.add_worksheet().set_name(name).map_err(workbook_error)?;
        Ok(self.skeleton.worksheets().len() - 1)
    }

    /// Fills the plain sheet at `index` with label and value rows: labels bold in the first
    /// column, values typed in the second, both columns `widths` wide.
    pub(super) fn fill_plain_sheet(
        &mut self,
        index: usize,
        lines: Vec<(&str, Cell)>,
        widths: (f64, f64),
    ) -> Result<(), ServiceError> {
        let sheet = self.skeleton.worksheet_from_index(index).map_err(workbook_error)?;
        for (row, (label, value)) in lines.into_iter().enumerate() {
            let row = u32::try_from(row).map_err(|_| ServiceError::Bug("too many lines".to_owned()))?;
            sheet.write_string_with_format(row, 0, label, &self.bold).map_err(workbook_error)?;
            write_plain_cell(sheet, row, 1, value, self.tz, &self.time)?;
        }
        sheet.set_column_width(0, widths.0).map_err(workbook_error)?;
        sheet.set_column_width(1, widths.1).map_err(workbook_error)?;
        Ok(())
    }

    fn new_sheet(&mut self, t: usize) -> Result<(), ServiceError> {
        let position = self.skeleton.worksheets().len();
        let table = &mut self.tables[t];
        table.sheets += 1;
        let name = if table.sheets == 1 { table.name.clone() } else { format!("{} {}", table.name, table.sheets) };
        self.skeleton.add_worksheet().set_name(&name).map_err(workbook_error)?;
        let rows = SheetStream::new(&table.headers, position == 0, self.tz)?;
        self.sheets.push(TableSheet { position, rows });
        table.current = self.sheets.len() - 1;
        Ok(())
    }

    pub(super) fn row(&mut self, t: usize, cells: impl IntoIterator<Item = Cell>) -> Result<(), ServiceError> {
        if self.sheets[self.tables[t].current].rows.rows >= self.max_rows {
            self.new_sheet(t)?;
        }
        let current = self.tables[t].current;
        self.sheets[current].rows.row(cells)
    }

    /// The workbook, in memory.
    pub(super) fn finish(self) -> Result<Vec<u8>, ServiceError> {
        Ok(self.write(Cursor::new(Vec::new()))?.into_inner())
    }

    /// Writes the workbook to `file`. Nothing holds the whole workbook in memory: the table
    /// sheets are copied from their temporary files, already compressed.
    pub(super) fn finish_to(self, file: &tempfile::NamedTempFile) -> Result<(), ServiceError> {
        let mut out = self.write(std::io::BufWriter::new(file.as_file()))?;
        out.flush().map_err(workbook_error)
    }

    /// Puts the package together: rust_xlsxwriter writes it with an empty placeholder for each
    /// table sheet (so the sheet list, the autofilters' names and the styles are its own), then
    /// every entry is copied as it is compressed, a placeholder replaced by the table sheet.
    fn write<W: Write + Seek>(mut self, sink: W) -> Result<W, ServiceError> {
        let mut streams = Vec::with_capacity(self.sheets.len());
        for sheet in self.sheets {
            // The same range as the sheet's own autoFilter element.
            let (rows, columns) = (sheet.rows.rows, sheet.rows.columns.len());
            let last_column = u16::try_from(columns.saturating_sub(1)).unwrap_or(u16::MAX);
            let placeholder = self.skeleton.worksheet_from_index(sheet.position).map_err(workbook_error)?;
            placeholder.autofilter(0, 0, rows.saturating_sub(1), last_column).map_err(workbook_error)?;
            // rust_xlsxwriter names the Nth worksheet's part sheetN.xml.
            streams.push((format!("xl/worksheets/sheet{}.xml", sheet.position + 1), sheet.rows.finish()?));
        }
        let skeleton = self.skeleton.save_to_buffer().map_err(workbook_error)?;
        let mut skeleton = ZipArchive::new(Cursor::new(skeleton)).map_err(workbook_error)?;
        let mut out = ZipWriter::new(sink);
        for i in 0..skeleton.len() {
            let entry = skeleton.by_index_raw(i).map_err(workbook_error)?;
            let name = entry.name().map_err(workbook_error)?.into_owned();
            match streams.iter().position(|(part, _)| *part == name) {
                Some(found) => {
                    drop(entry);
                    let (part, file) = streams.swap_remove(found);
                    let mut sheet = ZipArchive::new(file).map_err(workbook_error)?;
                    let sheet = sheet.by_index_raw(0).map_err(workbook_error)?;
                    out.raw_copy_file_rename(sheet, part).map_err(workbook_error)?;
                }
                None => out.raw_copy_file(entry).map_err(workbook_error)?,
            }
        }
        if let Some((part, _)) = streams.first() {
            return Err(ServiceError::Bug(format!("the workbook has no place for the table sheet {part}")));
        }
        out.finish().map_err(workbook_error)
    }
}

/// Writes one typed cell of a plain sheet: text as a string (never a formula), numbers and flags
/// as such, times as date-times of the zone in `time` format.
fn write_plain_cell(
    sheet: &mut Worksheet,
    row: u32,
    col: u16,
    cell: Cell,
    tz: Tz,
    time: &Format,
) -> Result<(), ServiceError> {
    match cell {
        Cell::Empty => {}
        Cell::Text(text) => {
            sheet.write_string(row, col, cut(text)).map_err(workbook_error)?;
        }
        Cell::Int(n) => {
            sheet.write_number(row, col, n as f64).map_err(workbook_error)?;
        }
        Cell::Number(n) => {
            sheet.write_number(row, col, n).map_err(workbook_error)?;
        }
        Cell::Bool(b) => {
            sheet.write_boolean(row, col, b).map_err(workbook_error)?;
        }
        Cell::Time(t) => {
            sheet.write_number_with_format(row, col, excel_time(t, tz)?, time).map_err(workbook_error)?;
        }
    }
    Ok(())
}

/// `text` within Excel's cell limit: a longer one is cut, and says so.
fn cut(text: String) -> String {
    // Excel counts UTF-16 units, and a length in bytes bounds that count: count only long texts.
    if text.len() <= MAX_CELL_CHARS || text.encode_utf16().count() <= MAX_CELL_CHARS {
        return text;
    }
    let mut units = 0;
    let cut: String = text
        .chars()
        .take_while(|c| {
            units += c.len_utf16();
            units <= MAX_CELL_CHARS - 20
        })
        .collect();
    format!("{cut} [cut: see CSV]")
}

/// The Excel serial date-time of `t`'s wall-clock time in `tz` (Excel cells carry no zone).
fn excel_time(t: chrono::DateTime<chrono::Utc>, tz: Tz) -> Result<f64, ServiceError> {
    let local = t.with_timezone(&tz).naive_local();
    Ok(ExcelDateTime::from_timestamp(local.and_utc().timestamp()).map_err(workbook_error)?.to_excel())
}

/// One table sheet's XML on its way into a compressed ZIP entry of its own.
struct SheetStream {
    zip: ZipWriter<File>,
    xml: Vec<u8>,
    /// Rows written, the header included.
    rows: u32,
    /// Column names (`A`, `B`, ... `AB`) for the cell references, one per header.
    columns: Vec<Box<[u8]>>,
    tz: Tz,
}

/// The worksheet element's opening, as the schema orders its children.
const SHEET_START: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"#,
    "\n",
    r#"<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" "#,
    r#"xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">"#,
);

impl SheetStream {
    /// Starts a sheet headed by `headers` (bold, frozen, columns as wide as the header and at
    /// least 12 characters); `first` selects its tab (the first sheet of a workbook).
    fn new(headers: &[String], first: bool, tz: Tz) -> Result<SheetStream, ServiceError> {
        let file = tempfile::tempfile()
            .map_err(|e| ServiceError::Bug(format!("cannot create a temporary file for the workbook: {e}")))?;
        let mut zip = ZipWriter::new(file);
        let options = SimpleFileOptions::default()
            // Level 1: most of a large workbook's time goes to compression at the default level,
            // for a file only a little smaller.
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(1))
            .unix_permissions(0o600)
            .last_modified_time(zip::DateTime::default());
        zip.start_file("sheet.xml", options).map_err(workbook_error)?;
        let columns: Vec<Box<[u8]>> = (0..headers.len()).map(column_name).collect();
        let mut xml = Vec::with_capacity(FLUSH_BYTES + 64 * 1024);
        xml.extend_from_slice(SHEET_START.as_bytes());
        xml.extend_from_slice(if first {
            br#"<sheetViews><sheetView tabSelected="1" workbookViewId="0">"#
        } else {
            br#"<sheetViews><sheetView workbookViewId="0">"#
        });
        xml.extend_from_slice(
            br#"<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/><selection pane="bottomLeft"/></sheetView></sheetViews><sheetFormatPr defaultRowHeight="15"/>"#,
        );
        if !headers.is_empty() {
            xml.extend_from_slice(b"<cols>");
            for (c, header) in headers.iter().enumerate() {
                let width = column_width((header.chars().count() as f64 + 2.0).max(12.0));
                let col = c + 1;
                xml.extend_from_slice(
                    format!(r#"<col min="{col}" max="{col}" width="{width}" customWidth="1"/>"#).as_bytes(),
                );
            }
            xml.extend_from_slice(b"</cols>");
        }
        xml.extend_from_slice(b"<sheetData>");
        let mut sheet = SheetStream { zip, xml, rows: 0, columns, tz };
        sheet.start_row();
        for (c, header) in headers.iter().enumerate() {
            sheet.cell_start(c, Some(HEADER_STYLE), Some("inlineStr"))?;
            sheet.inline_text(header);
        }
        sheet.end_row()?;
        Ok(sheet)
    }

    fn start_row(&mut self) {
        self.xml.extend_from_slice(b"<row r=\"");
        self.xml.extend_from_slice(itoa::Buffer::new().format(self.rows + 1).as_bytes());
        self.xml.extend_from_slice(b"\">");
    }

    fn end_row(&mut self) -> Result<(), ServiceError> {
        self.xml.extend_from_slice(b"</row>");
        self.rows += 1;
        if self.xml.len() >= FLUSH_BYTES {
            self.zip.write_all(&self.xml).map_err(workbook_error)?;
            self.xml.clear();
        }
        Ok(())
    }

    /// `<c r="B7"` with its style and type, up to the `>` before the value.
    fn cell_start(&mut self, col: usize, style: Option<u32>, kind: Option<&str>) -> Result<(), ServiceError> {
        if col >= self.columns.len() {
            if col >= MAX_COLUMNS {
                return Err(ServiceError::Bug(format!("a row has more than {MAX_COLUMNS} cells")));
            }
            // A row longer than the header (never in cmdb's own tables): name the columns it needs.
            self.columns.extend((self.columns.len()..=col).map(column_name));
        }
        self.xml.extend_from_slice(b"<c r=\"");
        self.xml.extend_from_slice(&self.columns[col]);
        self.xml.extend_from_slice(itoa::Buffer::new().format(self.rows + 1).as_bytes());
        self.xml.push(b'"');
        if let Some(style) = style {
            self.xml.extend_from_slice(b" s=\"");
            self.xml.extend_from_slice(itoa::Buffer::new().format(style).as_bytes());
            self.xml.push(b'"');
        }
        if let Some(kind) = kind {
            self.xml.extend_from_slice(b" t=\"");
            self.xml.extend_from_slice(kind.as_bytes());
            self.xml.push(b'"');
        }
        self.xml.push(b'>');
        Ok(())
    }

    /// An inline string's value and the cell's end.
    fn inline_text(&mut self, text: &str) {
        // Leading or trailing white space is kept only if the element says so.
        let preserve = text.starts_with([' ', '\t', '\n']) || text.ends_with([' ', '\t', '\n']);
        self.xml.extend_from_slice(if preserve { b"<is><t xml:space=\"preserve\">" } else { b"<is><t>" });
        push_escaped(&mut self.xml, text);
        self.xml.extend_from_slice(b"</t></is></c>");
    }

    /// A whole cell whose value is `value` as written (a number, or 0/1 of a flag).
    fn value_cell(
        &mut self,
        col: usize,
        style: Option<u32>,
        kind: Option<&str>,
        value: &str,
    ) -> Result<(), ServiceError> {
        self.cell_start(col, style, kind)?;
        self.xml.extend_from_slice(b"<v>");
        self.xml.extend_from_slice(value.as_bytes());
        self.xml.extend_from_slice(b"</v></c>");
        Ok(())
    }

    fn number(&mut self, col: usize, style: Option<u32>, value: f64) -> Result<(), ServiceError> {
        if !value.is_finite() {
            // Excel has no NaN or infinity: say it in words.
            self.cell_start(col, None, Some("inlineStr"))?;
            self.inline_text(&value.to_string());
            return Ok(());
        }
        self.value_cell(col, style, None, zmij::Buffer::new().format_finite(value))
    }

    /// Writes a row of cells after the rows before it.
    fn row(&mut self, cells: impl IntoIterator<Item = Cell>) -> Result<(), ServiceError> {
        self.start_row();
        for (col, cell) in cells.into_iter().enumerate() {
            match cell {
                // An empty text is no cell, as in rust_xlsxwriter and Excel.
                Cell::Empty => {}
                Cell::Text(text) if text.is_empty() => {}
                Cell::Text(text) => {
                    self.cell_start(col, None, Some("inlineStr"))?;
                    self.inline_text(&cut(text));
                }
                // Excel numbers are doubles: exact up to 2^53, far beyond any count or byte size here.
                Cell::Int(n) => self.value_cell(col, None, None, itoa::Buffer::new().format(n))?,
                Cell::Number(n) => self.number(col, None, n)?,
                Cell::Bool(b) => self.value_cell(col, None, Some("b"), if b { "1" } else { "0" })?,
                Cell::Time(t) => {
                    let serial = excel_time(t, self.tz)?;
                    self.number(col, Some(TIME_STYLE), serial)?;
                }
            }
        }
        self.end_row()
    }

    /// Ends the sheet (its autofilter covers every row) and its ZIP entry; returns the file.
    fn finish(mut self) -> Result<File, ServiceError> {
        self.xml.extend_from_slice(b"</sheetData><autoFilter ref=\"A1:");
        self.xml.extend_from_slice(self.columns.last().map_or(b"A", |name| name));
        self.xml.extend_from_slice(itoa::Buffer::new().format(self.rows.max(1)).as_bytes());
        self.xml.extend_from_slice(
            br#""/><pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" footer="0.3"/></worksheet>"#,
        );
        self.zip.write_all(&self.xml).map_err(workbook_error)?;
        self.zip.finish().map_err(workbook_error)
    }
}

/// The name of the column at `index` (0 is `A`), as cell references spell it.
fn column_name(index: usize) -> Box<[u8]> {
    let index = u16::try_from(index).unwrap_or(u16::MAX);
    rust_xlsxwriter::utility::column_number_to_name(index).into_bytes().into_boxed_slice()
}

/// A column width as Excel stores it: `characters` of the default font (7 pixels each, plus 5 of
/// padding), rounded to whole pixels and written in 1/256 of a character, as Excel itself does.
fn column_width(characters: f64) -> f64 {
    let pixels = (characters * 7.0 + 0.5).trunc() + 5.0;
    ((pixels / 7.0) * 256.0).trunc() / 256.0
}

/// Appends `text` as XML character data the way Excel writes it: `&`, `<` and `>` as entities;
/// control characters (but tab and line feed), which XML 1.0 cannot carry, and the non-characters
/// U+FFFE and U+FFFF as `_xHHHH_`; and so that a literal `_xHHHH_` reads back as itself, its
/// underscore as `_x005F_`.
fn push_escaped(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    // Most texts need nothing: one pass that the compiler vectorizes says so.
    if !bytes.iter().any(|&b| b < 0x20 || matches!(b, b'&' | b'<' | b'>' | b'_' | 0xEF)) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut done = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let (replacement, skip): (Option<&[u8]>, usize) = match b {
            b'&' => (Some(b"&amp;"), 1),
            b'<' => (Some(b"&lt;"), 1),
            b'>' => (Some(b"&gt;"), 1),
            b'\t' | b'\n' => (None, 1),
            0..=0x1f => {
                out.extend_from_slice(&bytes[done..i]);
                out.extend_from_slice(format!("_x{b:04X}_").as_bytes());
                i += 1;
                done = i;
                continue;
            }
            b'_' if is_ooxml_escape(&bytes[i..]) => {
                // Only the underscore is escaped; the rest is copied as it is.
                out.extend_from_slice(&bytes[done..i]);
                out.extend_from_slice(b"_x005F");
                done = i;
                i += 1;
                continue;
            }
            0xEF if bytes[i + 1..].starts_with(&[0xBF, 0xBE]) => (Some(b"_xFFFE_"), 3),
            0xEF if bytes[i + 1..].starts_with(&[0xBF, 0xBF]) => (Some(b"_xFFFF_"), 3),
            _ => (None, 1),
        };
        if let Some(replacement) = replacement {
            out.extend_from_slice(&bytes[done..i]);
            out.extend_from_slice(replacement);
            done = i + skip;
        }
        i += skip;
    }
    out.extend_from_slice(&bytes[done..]);
}

/// True when `bytes` starts with `_xHHHH_` (four hex digits), the form Excel reads as a character.
fn is_ooxml_escape(bytes: &[u8]) -> bool {
    bytes.len() >= 7 && bytes[1] == b'x' && bytes[2..6].iter().all(u8::is_ascii_hexdigit) && bytes[6] == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;
    use calamine::{Data, Reader, open_workbook_auto_from_rs};
    use std::io::Read;

    fn read_back(bytes: Vec<u8>) -> calamine::Sheets<Cursor<Vec<u8>>> {
        open_workbook_auto_from_rs(Cursor::new(bytes)).expect("it reads back")
    }

    fn part(bytes: &[u8], name: &str) -> String {
        let mut zip = ZipArchive::new(Cursor::new(bytes)).expect("zip");
        let mut text = String::new();
        zip.by_name(name).expect(name).read_to_string(&mut text).expect("utf-8");
        text
    }

    /// Excel's cell limit counts UTF-16 units: a text of 20,000 characters outside the Basic
    /// Multilingual Plane (40,000 units) is cut, not refused (which failed the whole export).
    #[test]
    fn a_text_over_the_cell_limit_in_utf16_units_is_cut() {
        let mut book = Book::new(Tz::UTC);
        let table = book.table("Sheet", &["text"]).expect("table");
        book.row(table, [Cell::Text("🖥".repeat(20_000))]).expect("the row is written");
        let mut read = read_back(book.finish().expect("the workbook is written"));
        let range = read.worksheet_range("Sheet").expect("the sheet");
        let Some(Data::String(text)) = range.get_value((1, 0)) else { panic!("no text cell") };
        assert!(text.ends_with(" [cut: see CSV]"), "{}", &text[text.len() - 40..]);
        assert!(text.encode_utf16().count() <= MAX_CELL_CHARS);
        assert!(text.starts_with("🖥🖥"));
    }

    /// Every kind of cell reads back as what was written, text that XML or Excel would take for
    /// markup or an escape included, and empty cells keep the cells after them in their columns.
    #[test]
    fn cells_read_back_as_written() {
        let texts = [
            "plain",
            "a < b && c > d",
            " leading and trailing ",
            "tab\tand\nnewline",
            "bell\u{7} and carriage return\r",
            "literal _x0041_ and _x00e9_ stay literal",
            "_x12",
            "non-character \u{FFFE}\u{FFFF} end",
            "=1+1",
            "ünïcödé 🖥",
        ];
        let mut book = Book::new(Tz::UTC);
        let table = book.table("Cells", &["text", "empty", "int", "number", "flag", "when_at"]).expect("table");
        let when = chrono::DateTime::parse_from_rfc3339("2026-12-06T15:59:59Z").expect("time").to_utc();
        for text in texts {
            book.row(
                table,
                [
                    Cell::Text(text.to_owned()),
                    Cell::Empty,
                    Cell::Int(-299_999_999_000),
                    Cell::Number(279.4),
                    Cell::Bool(false),
                    Cell::Time(when),
                ],
            )
            .expect("row");
        }
        let mut read = read_back(book.finish().expect("written"));
        let range = read.worksheet_range("Cells").expect("sheet");
        let rows: Vec<_> = range.rows().collect();
        assert_eq!(rows[0][5], Data::String("when_at (UTC)".into()));
        for (row, text) in rows[1..].iter().zip(texts) {
            // Excel itself writes a carriage return as _x000D_; a reader gives it back.
            assert_eq!(row[0], Data::String(text.into()), "{text:?}");
            assert_eq!(row[1], Data::Empty);
            assert_eq!(row[2], Data::Float(-299_999_999_000.0));
            assert_eq!(row[3], Data::Float(279.4));
            assert_eq!(row[4], Data::Bool(false));
            let Data::DateTime(t) = &row[5] else { panic!("not a date-time: {:?}", row[5]) };
            assert_eq!(t.as_datetime().map(|t| t.to_string()), Some("2026-12-06 15:59:59".to_owned()));
        }
        assert_eq!(rows.len(), texts.len() + 1);
    }

    /// The header and time styles the sheets name by number are the bold font and the date-time
    /// format in the styles rust_xlsxwriter writes.
    #[test]
    fn the_styles_the_sheets_name_are_bold_and_date_time() {
        let mut book = Book::new(Tz::UTC);
        book.table("Sheet", &["a"]).expect("table");
        let bytes = book.finish().expect("written");
        let styles = part(&bytes, "xl/styles.xml");
        let xfs = styles.split("<cellXfs").nth(1).expect("cellXfs");
        let xfs: Vec<&str> = xfs.split("<xf ").skip(1).collect();
        let fonts: Vec<&str> = styles.split("<font>").skip(1).collect();
        let font_of = |xf: &str| -> usize {
            let id = xf.split("fontId=\"").nth(1).and_then(|s| s.split('"').next()).expect("fontId");
            id.parse().expect("number")
        };
        assert!(fonts[font_of(xfs[HEADER_STYLE as usize])].starts_with("<b/>"), "{styles}");
        let format_id = xfs[TIME_STYLE as usize].split("numFmtId=\"").nth(1).and_then(|s| s.split('"').next());
        assert!(
            styles.contains(&format!(
                r#"<numFmt numFmtId="{}" formatCode="yyyy-mm-dd hh:mm:ss"/>"#,
                format_id.expect("id")
            )),
            "{styles}"
        );
        let sheet = part(&bytes, "xl/worksheets/sheet1.xml");
        assert!(sheet.contains(r#"<c r="A1" s="1" t="inlineStr"><is><t>a</t></is></c>"#), "{sheet}");
    }

    /// A table longer than a sheet continues on "Name 2", each sheet with its header, autofilter
    /// and the rows in order; a plain sheet and another table keep their places.
    #[test]
    fn a_long_table_continues_on_a_new_sheet() {
        let mut book = Book::new(Tz::UTC);
        book.max_rows = 3;
        let about = book.add_plain_sheet("About").expect("about");
        let long = book.table("Changes", &["n"]).expect("table");
        let other = book.table("Other", &["x", "y"]).expect("table");
        for n in 1..=5 {
            book.row(long, [Cell::Int(n)]).expect("row");
        }
        book.row(other, [Cell::Empty, Cell::Text("y1".to_owned())]).expect("row");
        book.fill_plain_sheet(about, vec![("Rows", Cell::Int(5))], (20.0, 30.0)).expect("about");
        let bytes = book.finish().expect("written");
        let mut read = read_back(bytes.clone());
        assert_eq!(read.sheet_names(), ["About", "Changes", "Other", "Changes 2", "Changes 3"]);
        let column = |read: &mut calamine::Sheets<_>, name: &str| -> Vec<Data> {
            read.worksheet_range(name).expect(name).rows().map(|r| r[0].clone()).collect()
        };
        assert_eq!(column(&mut read, "Changes"), [Data::String("n".into()), Data::Float(1.0), Data::Float(2.0)]);
        assert_eq!(column(&mut read, "Changes 2"), [Data::String("n".into()), Data::Float(3.0), Data::Float(4.0)]);
        assert_eq!(column(&mut read, "Changes 3"), [Data::String("n".into()), Data::Float(5.0)]);
        let other = read.worksheet_range("Other").expect("other");
        assert_eq!(other.get_value((1, 1)), Some(&Data::String("y1".into())));
        let about = read.worksheet_range("About").expect("about");
        assert_eq!(about.get_value((0, 1)), Some(&Data::Float(5.0)));
        let workbook = part(&bytes, "xl/workbook.xml");
        assert!(workbook.contains("Changes!$A$1:$A$3"), "{workbook}");
        assert!(workbook.contains("'Changes 3'!$A$1:$A$2"), "{workbook}");
        assert!(part(&bytes, "xl/worksheets/sheet5.xml").contains(r#"<autoFilter ref="A1:A2"/>"#));
        assert!(part(&bytes, "xl/worksheets/sheet3.xml").contains(r#"<autoFilter ref="A1:B2"/>"#));
    }

    #[test]
    fn column_widths_are_whole_pixels_as_excel_writes_them() {
        // The figures rust_xlsxwriter (and Excel) write for these widths.
        assert_eq!(column_width(12.0), 12.7109375);
        assert_eq!(column_width(14.5), 15.28515625);
    }
}

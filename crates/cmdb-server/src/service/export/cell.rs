//! One cell of an export, typed, and its CSV form.

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;

/// One cell of an export.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Nothing.
    Empty,
    /// Text.
    Text(String),
    /// An integer.
    Int(i64),
    /// A measure with a fraction (GB, GiB).
    Number(f64),
    /// Yes or no.
    Bool(bool),
    /// A time (UTC).
    Time(DateTime<Utc>),
}

impl Cell {
    pub(super) fn text(value: Option<&str>) -> Cell {
        value.map_or(Cell::Empty, |v| Cell::Text(v.to_owned()))
    }

    pub(super) fn int(value: Option<i64>) -> Cell {
        value.map_or(Cell::Empty, Cell::Int)
    }

    pub(super) fn time(value: Option<DateTime<Utc>>) -> Cell {
        value.map_or(Cell::Empty, Cell::Time)
    }

    /// The CSV field; times are RFC 3339 with their offset in `tz`.
    pub fn csv(&self, tz: Tz) -> String {
        match self {
            Cell::Empty => String::new(),
            Cell::Text(text) => csv_text(text),
            Cell::Int(n) => n.to_string(),
            Cell::Number(n) => n.to_string(),
            Cell::Bool(b) => b.to_string(),
            Cell::Time(t) => t.with_timezone(&tz).to_rfc3339_opts(SecondsFormat::Secs, true),
        }
    }
}

/// Text as a CSV field, defused against formula injection.
pub fn csv_text(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_owned() }
}

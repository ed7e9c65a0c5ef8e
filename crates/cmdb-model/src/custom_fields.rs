//! Fields an organisation adds to the asset record (purchase date, cost, supplier, ...): their
//! definitions and the one rule for reading a value of each type.
//!
//! Values live in the `business` pseudo-section under `custom` (`business.custom.purchase_date`),
//! so setting one is an ordinary change record and the as-of view rebuilds it like any other
//! field. Definitions are stored by the server; this module only says what a definition and a
//! value may be, so the API, the page and the spreadsheet import accept exactly the same forms.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The type of a custom field, which decides the forms its values are accepted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Free text (one line or several), at most [`MAX_TEXT_LEN`] bytes.
    Text,
    /// A whole number (stored as a JSON number, within ±2^53 so every reader keeps it exact).
    Integer,
    /// A decimal number, stored as a canonical decimal string, never a float (money is exact).
    Decimal,
    /// A calendar date, stored as `YYYY-MM-DD`.
    Date,
    /// One of the field's `choices`.
    Enum,
    /// Yes or no.
    Bool,
}

impl FieldType {
    /// Every type.
    pub const ALL: [FieldType; 6] =
        [FieldType::Text, FieldType::Integer, FieldType::Decimal, FieldType::Date, FieldType::Enum, FieldType::Bool];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Integer => "integer",
            FieldType::Decimal => "decimal",
            FieldType::Date => "date",
            FieldType::Enum => "enum",
            FieldType::Bool => "bool",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(text: &str) -> Option<Self> {
        FieldType::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// The accepted forms, as an error message names them.
    pub fn accepted_forms(self) -> &'static str {
        match self {
            FieldType::Text => "text of at most 200 bytes without control characters",
            FieldType::Integer => "a whole number such as 42 or -7",
            FieldType::Decimal => "a decimal number such as 1299.50 or -3 (digits, an optional '.' and digits)",
            FieldType::Date => "a date as YYYY-MM-DD or YYYY/M/D (or a date cell in a spreadsheet)",
            FieldType::Enum => "one of the field's choices",
            FieldType::Bool => "true or false (also yes/no, 1/0)",
        }
    }
}

/// Longest text value.
pub const MAX_TEXT_LEN: usize = 200;
/// Most choices an enum field may have.
pub const MAX_CHOICES: usize = 200;
/// Largest integer kept exact by every reader (JavaScript, Excel): 2^53.
const MAX_SAFE_INTEGER: i64 = 1 << 53;

/// A custom field as defined by an admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDefinition {
    /// The key in `business.custom` and the column header in imports and exports.
    pub key: String,
    /// What a person reads.
    pub label: String,
    /// The type of its values.
    #[serde(rename = "type")]
    pub field_type: FieldType,
    /// For `enum`: the values a person may choose, in display order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    /// A hint shown beside the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

/// Why a definition or a value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CustomFieldError(pub String);

/// Checks a field key: `[a-z][a-z0-9_]{0,39}` (it is a JSON key, a column header and a query
/// parameter, so it stays plain).
pub fn check_key(key: &str) -> Result<(), CustomFieldError> {
    let mut chars = key.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && key.len() <= 40 {
        Ok(())
    } else {
        Err(CustomFieldError(format!(
            "key {key:?} must be a lowercase letter followed by at most 39 lowercase letters, digits or '_'"
        )))
    }
}

fn check_text(what: &str, text: &str, max: usize) -> Result<String, CustomFieldError> {
    let trimmed = text.trim();
    if trimmed.len() > max {
        return Err(CustomFieldError(format!("{what} is longer than {max} bytes")));
    }
    if trimmed.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(CustomFieldError(format!("{what} contains control characters")));
    }
    Ok(trimmed.to_owned())
}

impl FieldDefinition {
    /// Checks and normalizes a definition (key, label, choices, help).
    pub fn normalized(mut self) -> Result<FieldDefinition, CustomFieldError> {
        check_key(&self.key)?;
        self.label = check_text("the label", &self.label, MAX_TEXT_LEN)?;
        if self.label.is_empty() {
            return Err(CustomFieldError("a field needs a label".to_owned()));
        }
        self.help = match self.help.take() {
            Some(help) => Some(check_text("the help", &help, 1000)?).filter(|h| !h.is_empty()),
            None => None,
        };
        let mut choices = Vec::new();
        for choice in &self.choices {
            let choice = check_text("a choice", choice, MAX_TEXT_LEN)?;
            if !choice.is_empty() && !choices.contains(&choice) {
                choices.push(choice);
            }
        }
        match self.field_type {
            FieldType::Enum if choices.is_empty() => {
                return Err(CustomFieldError("an enum field needs at least one choice".to_owned()));
            }
            FieldType::Enum if choices.len() > MAX_CHOICES => {
                return Err(CustomFieldError(format!("an enum field has at most {MAX_CHOICES} choices")));
            }
            FieldType::Enum => {}
            _ if !choices.is_empty() => {
                return Err(CustomFieldError(format!(
                    "only an enum field has choices, not a {} field",
                    self.field_type.as_str()
                )));
            }
            _ => {}
        }
        self.choices = choices;
        Ok(self)
    }

    /// Reads a value of this field: `None` when it clears the field (null or empty text),
    /// otherwise the stored form. The error names the field and the accepted forms.
    pub fn value(&self, input: &Value) -> Result<Option<Value>, CustomFieldError> {
        let refuse = |what: &str| {
            CustomFieldError(format!(
                "{} ({}): {what} is not accepted; expected {}",
                self.key,
                self.label,
                self.field_type.accepted_forms()
            ))
        };
        let text = match input {
            Value::Null => return Ok(None),
            Value::String(s) if s.trim().is_empty() => return Ok(None),
            Value::String(s) => s.trim().to_owned(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Array(_) | Value::Object(_) => return Err(refuse("a list or an object")),
        };
        let shown = if text.chars().count() > 40 {
            format!("{}...", text.chars().take(40).collect::<String>())
        } else {
            text.clone()
        };
        let refuse_text = || refuse(&format!("{shown:?}"));
        let stored = match self.field_type {
            FieldType::Text => {
                if input.is_boolean() {
                    return Err(refuse("true or false"));
                }
                Value::String(check_text(&self.key, &text, MAX_TEXT_LEN)?)
            }
            FieldType::Integer => {
                let n: i64 = text.parse().map_err(|_| refuse_text())?;
                if !(-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&n) {
                    return Err(refuse(&format!("{n} (beyond ±2^53)")));
                }
                Value::from(n)
            }
            FieldType::Decimal => Value::String(canonical_decimal(&text).ok_or_else(refuse_text)?),
            FieldType::Date => Value::String(parse_date(&text).ok_or_else(refuse_text)?.format("%Y-%m-%d").to_string()),
            FieldType::Enum => {
                let choice = self.choices.iter().find(|c| **c == text).ok_or_else(|| {
                    CustomFieldError(format!(
                        "{} ({}): {shown:?} is not one of its choices: {}",
                        self.key,
                        self.label,
                        self.choices.join(", ")
                    ))
                })?;
                Value::String(choice.clone())
            }
            FieldType::Bool => match text.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "y" => Value::Bool(true),
                "false" | "no" | "0" | "n" => Value::Bool(false),
                _ => return Err(refuse_text()),
            },
        };
        Ok(Some(stored))
    }
}

/// A date as `YYYY-MM-DD` or `YYYY/M/D` (the two forms spreadsheets and people write dates in
/// without ambiguity between day and month).
pub fn parse_date(text: &str) -> Option<chrono::NaiveDate> {
    let (y, rest) = text.split_once(['-', '/'])?;
    let separator = text.as_bytes().get(y.len()).copied()?;
    let (m, d) = rest.split_once(separator as char)?;
    let digits =
        |s: &str, min: usize, max: usize| (min..=max).contains(&s.len()) && s.chars().all(|c| c.is_ascii_digit());
    let (month_min, day_min) = if separator == b'-' { (2, 2) } else { (1, 1) };
    if !digits(y, 4, 4) || !digits(m, month_min, 2) || !digits(d, day_min, 2) {
        return None;
    }
    chrono::NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

/// A decimal `-?\d+(\.\d+)?` in canonical form: no leading zeros, no trailing zeros after the
/// point, no point without decimals, no negative zero (`-0012.500` reads `-12.5`). At most 30
/// digits, so every value fits a NUMERIC column and a person's sheet.
pub fn canonical_decimal(text: &str) -> Option<String> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = match digits.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if !all_digits(whole) || fraction.is_some_and(|f| !all_digits(f)) || whole.len() + fraction.map_or(0, str::len) > 30
    {
        return None;
    }
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    let fraction = fraction.map(|f| f.trim_end_matches('0')).unwrap_or("");
    let zero = whole == "0" && fraction.is_empty();
    let mut out = String::new();
    if negative && !zero {
        out.push('-');
    }
    out.push_str(whole);
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
    Some(out)
}

/// The custom fields an asset may be given values for, by key; fields deleted by an admin are
/// kept (their values stay readable in history) but refuse new values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Definitions {
    /// Live fields by key.
    pub fields: BTreeMap<String, FieldDefinition>,
    /// Keys of deleted fields (never reused).
    pub deleted: BTreeMap<String, FieldDefinition>,
}

impl Definitions {
    /// Reads a patch of custom values (`{"purchase_date": "2024-03-01", "supplier": null}`) into
    /// `values`: null or empty clears a key, every other key must be a live field.
    pub fn apply(
        &self,
        values: &mut BTreeMap<String, Value>,
        patch: &serde_json::Map<String, Value>,
    ) -> Result<(), CustomFieldError> {
        for (key, input) in patch {
            let definition = match (self.fields.get(key), self.deleted.get(key)) {
                (Some(definition), _) => definition,
                (None, Some(_)) => {
                    return Err(CustomFieldError(format!(
                        "{key}: the field was deleted; its values are kept in history only"
                    )));
                }
                (None, None) => return Err(CustomFieldError(format!("{key}: not a custom field"))),
            };
            match definition.value(input)? {
                Some(value) => {
                    values.insert(key.clone(), value);
                }
                None => {
                    values.remove(key);
                }
            }
        }
        Ok(())
    }
}

/// The finance set every new database starts with (an audit needs them before anyone thinks of
/// defining them): key, label, type, help.
pub const FINANCE_SET: &[(&str, &str, FieldType, &str)] = &[
    ("purchase_date", "Purchase date", FieldType::Date, "The date on the invoice."),
    ("purchase_cost", "Purchase cost", FieldType::Decimal, "Without tax, in the currency below."),
    ("currency", "Currency", FieldType::Text, "ISO 4217 code, e.g. CNY, EUR, USD."),
    ("supplier", "Supplier", FieldType::Text, ""),
    ("purchase_order", "Purchase order", FieldType::Text, "The PO number in the finance system."),
    ("warranty_end", "Warranty end", FieldType::Date, "Last day of the vendor warranty or support contract."),
    ("disposed_at", "Disposed", FieldType::Date, "When the asset left the books (sold, scrapped, returned)."),
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(t: FieldType) -> FieldDefinition {
        FieldDefinition { key: "f".into(), label: "F".into(), field_type: t, choices: vec![], help: None }
    }

    #[test]
    fn decimals_are_canonical_strings() {
        for (input, out) in
            [("1200.50", "1200.5"), ("-0012.500", "-12.5"), ("0.0", "0"), ("-0", "0"), ("7", "7"), ("00", "0")]
        {
            assert_eq!(canonical_decimal(input).as_deref(), Some(out), "{input}");
        }
        for bad in ["1e3", "1.", ".5", "+1", "1,5", "", "-", "1.2.3", "١٢", &"9".repeat(31)] {
            assert_eq!(canonical_decimal(bad), None, "{bad}");
        }
        let d = def(FieldType::Decimal);
        assert_eq!(d.value(&json!(12.25)).expect("number"), Some(json!("12.25")));
        assert_eq!(d.value(&json!("3")).expect("text"), Some(json!("3")));
        let e = d.value(&json!("12,50")).expect_err("comma");
        assert!(e.0.contains("f (F)") && e.0.contains("decimal number"), "{e}");
    }

    #[test]
    fn dates_in_the_two_unambiguous_forms() {
        let d = def(FieldType::Date);
        assert_eq!(d.value(&json!("2024-03-01")).expect("iso"), Some(json!("2024-03-01")));
        assert_eq!(d.value(&json!("2024/3/1")).expect("slashes"), Some(json!("2024-03-01")));
        assert_eq!(d.value(&json!(" 2024/12/31 ")).expect("trimmed"), Some(json!("2024-12-31")));
        for bad in ["2024-3-1", "01/03/2024", "2024-02-30", "2024/13/1", "20240301", "2024-03-01T00:00:00", "yesterday"]
        {
            assert!(d.value(&json!(bad)).is_err(), "{bad}");
        }
        assert_eq!(d.value(&json!(null)).expect("clear"), None);
        assert_eq!(d.value(&json!("")).expect("clear"), None);
    }

    #[test]
    fn every_type_refuses_what_it_cannot_hold() {
        assert_eq!(def(FieldType::Integer).value(&json!("42")).expect("int"), Some(json!(42)));
        assert!(def(FieldType::Integer).value(&json!(1.5)).is_err());
        assert!(def(FieldType::Integer).value(&json!(9_007_199_254_740_993_i64)).is_err());
        assert_eq!(def(FieldType::Bool).value(&json!("Yes")).expect("bool"), Some(json!(true)));
        assert!(def(FieldType::Bool).value(&json!("maybe")).is_err());
        assert!(def(FieldType::Text).value(&json!(["a"])).is_err());
        assert!(def(FieldType::Text).value(&json!("a\u{7}b")).is_err());
        let mut e = def(FieldType::Enum);
        e.choices = vec!["leased".into(), "owned".into()];
        assert_eq!(e.value(&json!("owned")).expect("choice"), Some(json!("owned")));
        assert!(e.value(&json!("Owned")).expect_err("case").0.contains("leased, owned"));
    }

    #[test]
    fn keys_and_definitions() {
        for good in ["a", "purchase_date", "x9", &format!("a{}", "b".repeat(39))] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        for bad in ["", "9a", "_a", "Purchase", "a-b", "a.b", &format!("a{}", "b".repeat(40))] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
        assert!(def(FieldType::Enum).normalized().is_err(), "an enum needs choices");
        let mut t = def(FieldType::Text);
        t.choices = vec!["x".into()];
        assert!(t.normalized().is_err(), "only enums have choices");
    }

    #[test]
    fn deleted_fields_refuse_values() {
        let mut defs = Definitions::default();
        defs.deleted.insert("old".into(), def(FieldType::Text));
        let mut values = BTreeMap::new();
        let patch = json!({"old": "x"});
        assert!(defs.apply(&mut values, patch.as_object().expect("o")).expect_err("deleted").0.contains("deleted"));
        let patch = json!({"nope": "x"});
        assert!(defs.apply(&mut values, patch.as_object().expect("o")).is_err());
    }
}

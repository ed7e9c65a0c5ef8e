//! The grammar of `dmidecode` text output, shared by every collector that reads SMBIOS through it
//! (`board` reads type 1, `memory` reads type 17).
//!
//! dmidecode has printed its decoded table in three framings over the years, and all three are
//! still found on live machines:
//!
//! * dmidecode >= 2.7 with handles (`dmidecode -t 1`):
//!   `Handle 0x0100, DMI type 1, 27 bytes` / `System Information` / `\tManufacturer: Dell Inc.`
//! * quiet mode (`dmidecode -q -t 1`): no preamble and no `Handle` lines; a record starts with its
//!   unindented title (`System Information`) and its fields are indented once.
//! * dmidecode <= 2.6: `Handle 0x0100` / `\tDMI type 1, 25 bytes.` / `\tSystem Information` /
//!   `\t\tManufacturer: ...`, i.e. the title itself is indented and the fields twice.
//!
//! Around the records there may be a preamble (`# dmidecode 3.0`, `Getting SMBIOS data from
//! sysfs.`, `SMBIOS 2.8 present.`, `74 structures occupying 4014 bytes.`, `Table at 0x...`),
//! `#` comment lines (`# SMBIOS implementations newer than version 2.8 are not ...`), lists
//! nested under a field (`Characteristics:` followed by deeper-indented lines), hex dumps of OEM
//! records, and whitespace-only lines. Tabs are sometimes converted to spaces by whoever copied
//! the output, so indentation is compared by width, never by counting tabs.
//!
//! [`parse_records`] reads all framings into [`DmiRecord`]s; [`read_table`] additionally decides,
//! from the probe's exit status and stderr, whether a host has no SMBIOS at all (a valid answer)
//! or whether dmidecode merely could not read it (an error: the stored data must stay).

use cmdb_model::identity::is_placeholder;

use crate::probe::{Exit, ProbeOutput};

/// One SMBIOS structure as dmidecode printed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DmiRecord {
    /// The structure handle (`Handle 0x0100`), absent in quiet (`-q`) output.
    pub handle: Option<u16>,
    /// The SMBIOS structure type (`DMI type 17`), absent in quiet (`-q`) output.
    pub dmi_type: Option<u8>,
    /// The record title, e.g. `System Information` or `Memory Device`.
    pub title: String,
    /// `Key: Value` fields in output order, both trimmed at both ends. List items nested under a
    /// field (e.g. the lines below `Characteristics:`) are not fields and are left out.
    pub fields: Vec<(String, String)>,
}

impl DmiRecord {
    /// The value of the first field called `key` (compared ignoring ASCII case).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
    }

    /// The value of the first of `keys` that the record has, in the order given.
    pub fn get_any(&self, keys: &[&str]) -> Option<&str> {
        keys.iter().find_map(|key| self.get(key))
    }

    /// True when the record is of SMBIOS type `dmi_type`. Quiet output carries no type, so the
    /// title decides there (`titles` lists every title dmidecode has used for that type).
    pub fn is_type(&self, dmi_type: u8, titles: &[&str]) -> bool {
        match self.dmi_type {
            Some(t) => t == dmi_type,
            None => titles.iter().any(|title| self.title.eq_ignore_ascii_case(title)),
        }
    }
}

/// Width of a line's leading blanks, a tab advancing to the next multiple of 8 (as a terminal
/// shows it), so that tab- and space-indented copies of the same output compare alike.
fn indent_width(line: &str) -> usize {
    let mut width = 0usize;
    for c in line.chars() {
        match c {
            ' ' => width = width.saturating_add(1),
            '\t' => width = width.saturating_add(8 - width % 8),
            _ => break,
        }
    }
    width
}

/// Parses a `Handle 0x0100, DMI type 1, 27 bytes` line (or the old bare `Handle 0x0100`).
fn parse_handle_line(content: &str) -> (Option<u16>, Option<u8>) {
    let rest = content.get("Handle".len()..).unwrap_or("").trim_start();
    let handle_text = rest.split(|c: char| c == ',' || c.is_whitespace()).next().unwrap_or("");
    let handle = handle_text
        .strip_prefix("0x")
        .or_else(|| handle_text.strip_prefix("0X"))
        .and_then(|hex| u16::from_str_radix(hex, 16).ok());
    (handle, parse_dmi_type(content))
}

/// Finds `DMI type N` anywhere in a line.
fn parse_dmi_type(content: &str) -> Option<u8> {
    let at = content.find("DMI type")?;
    let digits: String =
        content[at + "DMI type".len()..].trim_start().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A record being read, with the indentation that tells its fields from nested list items.
struct Builder {
    record: DmiRecord,
    /// Indentation of the title once it has been seen.
    title_indent: Option<usize>,
    /// Indentation of the first line under the title: the field level.
    field_indent: Option<usize>,
}

impl Builder {
    fn new(handle: Option<u16>, dmi_type: Option<u8>) -> Self {
        Builder {
            record: DmiRecord { handle, dmi_type, ..DmiRecord::default() },
            title_indent: None,
            field_indent: None,
        }
    }

    fn titled(title: &str, indent: usize) -> Self {
        let mut builder = Builder::new(None, None);
        builder.set_title(title, indent);
        builder
    }

    fn set_title(&mut self, title: &str, indent: usize) {
        title.clone_into(&mut self.record.title);
        self.title_indent = Some(indent);
    }
}

/// Keeps a finished record unless it is a preamble sentence that only looked like a title.
fn finish(builder: Option<Builder>, records: &mut Vec<DmiRecord>) {
    if let Some(builder) = builder
        && (builder.record.handle.is_some() || !builder.record.fields.is_empty())
    {
        records.push(builder.record);
    }
}

/// Parses dmidecode output in any of its framings (see the module documentation) into records.
///
/// Lines outside any record (the preamble) and records that carry neither a handle nor a field
/// (preamble sentences in quiet output look like titles) are dropped, so an output holding only a
/// preamble yields no record. Never fails: text that is not dmidecode output yields no records.
pub fn parse_records(text: &str) -> Vec<DmiRecord> {
    let mut records = Vec::new();
    let mut current: Option<Builder> = None;
    for raw in text.lines() {
        let content = raw.trim();
        // Whitespace-only lines occur both as record separators and inside OEM string lists;
        // records are delimited by `Handle` lines and unindented titles instead.
        if content.is_empty() {
            continue;
        }
        let indent = indent_width(raw);
        if indent == 0 {
            if content.starts_with('#') {
                continue;
            }
            if content.starts_with("Handle ") || content == "Handle" {
                finish(current.take(), &mut records);
                let (handle, dmi_type) = parse_handle_line(content);
                current = Some(Builder::new(handle, dmi_type));
                continue;
            }
            match current.as_mut() {
                Some(builder) if builder.title_indent.is_none() => builder.set_title(content, 0),
                _ => {
                    finish(current.take(), &mut records);
                    current = Some(Builder::titled(content, 0));
                }
            }
            continue;
        }
        let Some(builder) = current.as_mut() else { continue };
        let Some(title_indent) = builder.title_indent else {
            // dmidecode <= 2.6 puts the type on its own indented line, then an indented title.
            if content.starts_with("DMI type") {
                builder.record.dmi_type = builder.record.dmi_type.or_else(|| parse_dmi_type(content));
            } else {
                builder.set_title(content, indent);
            }
            continue;
        };
        if indent <= title_indent {
            continue;
        }
        let field_indent = *builder.field_indent.get_or_insert(indent);
        if indent > field_indent {
            continue;
        }
        if let Some((key, value)) = content.split_once(':') {
            builder.record.fields.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    finish(current.take(), &mut records);
    records
}

/// True for the strings dmidecode itself prints for a missing or bad value: `<OUT OF SPEC>`,
/// `<BAD INDEX>`, `<UNKNOWN>` and the like.
pub fn is_dmidecode_marker(value: &str) -> bool {
    let trimmed = value.trim();
    trimmed.len() >= 2 && trimmed.starts_with('<') && trimmed.ends_with('>')
}

/// A vendor string fit to report: trimmed at both ends, `None` when empty, a placeholder
/// ("Not Specified", "To Be Filled By O.E.M.", "Default string", ...) or a dmidecode marker.
pub fn known_value(value: &str) -> Option<String> {
    let trimmed = value.trim();
    if is_placeholder(trimmed) || is_dmidecode_marker(trimmed) { None } else { Some(trimmed.to_owned()) }
}

/// What a dmidecode probe says about a host's SMBIOS table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DmiTable {
    /// dmidecode read a table and printed these records.
    Records(Vec<DmiRecord>),
    /// dmidecode ran and found no SMBIOS table (VMs without firmware tables, many ARM boards).
    /// That is an answer: the host has no board identity and no DIMM inventory.
    Absent,
    /// dmidecode could not tell (not installed, permission denied, sudo refused, timed out).
    /// The message says which probe failed and how.
    Failed(String),
}

/// Classifies a dmidecode probe's output.
///
/// Only a run that exited 0 is trusted for records: a run killed at its timeout or one that
/// stopped on a broken table may have printed part of the table, and reporting that part would
/// record the missing DIMMs as removed. A failed run counts as [`DmiTable::Absent`] only when the
/// failure proves there is no table: dmidecode's own "No SMBIOS nor DMI entry point found", or a
/// missing `/dev/mem` (what dmidecode 3.x reports inside a VM without SMBIOS) with no sign of a
/// permission problem.
pub fn read_table(probe_id: &str, output: Option<&ProbeOutput>) -> DmiTable {
    let Some(output) = output else {
        return DmiTable::Failed(format!("{probe_id}: did not run"));
    };
    let stdout = output.text();
    let says_no_table = stdout.contains("No SMBIOS nor DMI entry point found");
    if output.succeeded() {
        let records = parse_records(&stdout);
        return if records.is_empty() || says_no_table { DmiTable::Absent } else { DmiTable::Records(records) };
    }
    if let Exit::Code(_) = output.exit {
        let stderr = output.stderr.to_ascii_lowercase();
        let permission_problem = stderr.contains("permission denied")
            || stderr.contains("operation not permitted")
            || stderr.contains("sudo:")
            || stderr.contains("password");
        let no_dev_mem = stderr.contains("/dev/mem: no such file or directory");
        if !permission_problem && (says_no_table || no_dev_mem) {
            return DmiTable::Absent;
        }
    }
    DmiTable::Failed(output.failure(probe_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(host: &str, file: &str) -> String {
        let path = format!("{}/../../fixtures/hosts/{host}/{file}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn handle_framing_with_preamble_and_comments() {
        let records = parse_records(&fixture("lenovo-rd650", "board.out"));
        assert_eq!(records.len(), 1);
        let record = &records[0];
        assert_eq!((record.handle, record.dmi_type, record.title.as_str()), (Some(1), Some(1), "System Information"));
        assert_eq!(record.get("Manufacturer"), Some("LENOVO"));
        assert_eq!(record.get("serial number"), Some("PC0C6Y1R"), "keys compare ignoring case");
        assert_eq!(record.fields.len(), 8);
    }

    #[test]
    fn quiet_framing_splits_on_titles() {
        let records = parse_records(&fixture("course-canonical", "memory.out"));
        assert_eq!(records.len(), 8);
        assert!(records.iter().all(|r| r.handle.is_none() && r.dmi_type.is_none() && r.title == "Memory Device"));
        assert_eq!(records[0].get("Size"), Some("1024 MB"));
        assert_eq!(records[7].get("Locator"), Some("DIMM #7"));
    }

    #[test]
    fn old_framing_with_indented_type_and_title() {
        let text = "# dmidecode 2.5\nSMBIOS 2.3 present.\nHandle 0x0001\n\tDMI type 1, 25 bytes.\n\tSystem Information\n\t\tManufacturer: Hewlett-Packard\n\t\tProduct Name: HP Compaq nc6000   \nHandle 0x0000\n\tDMI type 0, 20 bytes.\n\tBIOS Information\n\t\tCharacteristics:\n\t\t\tPCI is supported\n\t\tVendor: X\n";
        let records = parse_records(text);
        assert_eq!(records.len(), 2);
        assert_eq!((records[0].handle, records[0].dmi_type), (Some(1), Some(1)));
        assert_eq!(records[0].title, "System Information");
        assert_eq!(records[0].get("Product Name"), Some("HP Compaq nc6000"));
        assert_eq!(records[1].fields, vec![("Characteristics".into(), String::new()), ("Vendor".into(), "X".into())]);
    }

    #[test]
    fn nested_lists_and_hex_dumps_are_not_fields() {
        let text = "Handle 0xD300, DMI type 211, 13 bytes\nOEM-specific Type\n\tHeader and Data:\n\t\tD3 0D 00 D3\n\tStrings:\n\t\tBack: of System\n\t\t        \n\nHandle 0x0100, DMI type 1, 25 bytes\nSystem Information\n\tManufacturer: Dell Inc.\n";
        let records = parse_records(text);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].fields.len(), 2, "{:?}", records[0].fields);
        assert_eq!(records[1].get("Manufacturer"), Some("Dell Inc."));
    }

    #[test]
    fn spaces_instead_of_tabs_and_crlf() {
        let text = "Handle 0x1100, DMI type 17, 92 bytes\r\nMemory Device\r\n        Size: 8 GB\r\n        Locator: DIMM A\r\n";
        let records = parse_records(text);
        assert_eq!(records[0].get("Size"), Some("8 GB"));
        assert_eq!(records[0].get("Locator"), Some("DIMM A"));
    }

    #[test]
    fn preamble_only_yields_nothing() {
        assert!(parse_records(&fixture("this-vm", "board.out")).is_empty());
        assert!(parse_records("# dmidecode 2.12\n# No SMBIOS nor DMI entry point found, sorry.\n").is_empty());
        assert!(parse_records("").is_empty());
    }

    #[test]
    fn values_keep_inner_colons_and_lose_outer_blanks() {
        let records = parse_records("System Information\n\tSerial Number:  00:11:22  \n");
        assert_eq!(records[0].get("Serial Number"), Some("00:11:22"));
    }

    #[test]
    fn markers_and_placeholders_are_unknown() {
        for unknown in
            ["<OUT OF SPEC>", "<BAD INDEX>", "Not Specified", "To Be Filled By O.E.M.", "  ", "Default string"]
        {
            assert_eq!(known_value(unknown), None, "{unknown:?}");
        }
        assert_eq!(known_value(" ProLiant DL180 G6  ").as_deref(), Some("ProLiant DL180 G6"));
    }

    fn output(stdout: &str, stderr: &str, exit: Exit) -> ProbeOutput {
        ProbeOutput { stdout: stdout.as_bytes().to_vec(), stderr: stderr.to_owned(), exit }
    }

    #[test]
    fn missing_dev_mem_means_no_smbios_but_permission_problems_fail() {
        let preamble = "# dmidecode 3.4\nScanning /dev/mem for entry point.\n";
        assert_eq!(
            read_table("p", Some(&output(preamble, "/dev/mem: No such file or directory\n", Exit::Code(1)))),
            DmiTable::Absent
        );
        assert_eq!(read_table("p", Some(&output(preamble, "", Exit::Code(0)))), DmiTable::Absent);
        let denied = output(
            "# dmidecode 3.4\n",
            "/sys/firmware/dmi/tables/smbios_entry_point: Permission denied\n/dev/mem: Permission denied\n",
            Exit::Code(1),
        );
        assert!(matches!(read_table("p", Some(&denied)), DmiTable::Failed(m) if m.contains("Permission denied")));
        let sudo = output("", "sudo: a password is required\n", Exit::Code(1));
        assert!(matches!(read_table("p", Some(&sudo)), DmiTable::Failed(_)));
        assert!(
            matches!(read_table("p", Some(&ProbeOutput::not_found())), DmiTable::Failed(m) if m.contains("not found"))
        );
        assert!(matches!(read_table("p", None), DmiTable::Failed(_)));
    }

    #[test]
    fn partial_output_of_a_killed_run_is_not_trusted() {
        let partial = output("Handle 0x1100, DMI type 17, 40 bytes\nMemory Device\n\tSize: 8 GB\n", "", Exit::TimedOut);
        assert!(matches!(read_table("p", Some(&partial)), DmiTable::Failed(m) if m.contains("timed out")));
    }

    #[test]
    fn successful_run_yields_records() {
        let table = read_table("p", Some(&ProbeOutput::ok(fixture("dell-r630", "board.out"))));
        assert!(matches!(table, DmiTable::Records(r) if r.len() == 1));
    }
}

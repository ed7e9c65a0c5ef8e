//! The kernel's copy of the SMBIOS system fields in `/sys/class/dmi/id`, read when dmidecode
//! cannot answer (not installed, or too old for the host's SMBIOS 3 entry point).
//!
//! `sys_vendor` and `product_name` are world-readable; `product_serial` and `product_uuid` are
//! mode 0400 root. The probe script prints one line per file so the parser can tell a value from
//! an unreadable file from a missing one:
//!
//! ```text
//! dmi: present            (or "dmi: absent" when the directory does not exist)
//! sys_vendor: Dell Inc.
//! product_serial! unreadable
//! ```

use cmdb_model::report::BoardData;

use super::dmidecode::known_value;

/// The probe script (POSIX sh). `$(...)` strips the file's trailing newline.
pub const SCRIPT: &str = "d=/sys/class/dmi/id; if [ ! -d \"$d\" ]; then echo 'dmi: absent'; exit 0; fi; echo 'dmi: present'; \
for f in sys_vendor product_name product_serial product_uuid; do \
if [ -r \"$d/$f\" ] && v=$(cat \"$d/$f\" 2>/dev/null); then printf '%s: %s\\n' \"$f\" \"$v\"; \
elif [ -e \"$d/$f\" ]; then printf '%s! unreadable\\n' \"$f\"; fi; done";

/// One file's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SysfsValue {
    /// The file does not exist (or the probe did not mention it).
    #[default]
    Missing,
    /// The file exists but the probe's user may not read it.
    Unreadable,
    /// The file's content, trimmed.
    Value(String),
}

impl SysfsValue {
    fn known(&self) -> Option<String> {
        match self {
            SysfsValue::Value(v) => known_value(v),
            _ => None,
        }
    }
}

/// What the probe found under `/sys/class/dmi/id`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DmiSysfs {
    /// False when the directory does not exist: the kernel found no SMBIOS table.
    pub present: bool,
    /// `sys_vendor`.
    pub vendor: SysfsValue,
    /// `product_name`.
    pub product: SysfsValue,
    /// `product_serial` (root only).
    pub serial: SysfsValue,
    /// `product_uuid` (root only).
    pub uuid: SysfsValue,
}

impl DmiSysfs {
    /// Board data, when every field that exists could be read. With the serial or UUID
    /// unreadable the answer is `None`: reporting them as null would claim the board has none
    /// and split the asset from its stored identity.
    pub fn board(&self) -> Option<BoardData> {
        if !self.present {
            return Some(BoardData::default());
        }
        if self.serial == SysfsValue::Unreadable || self.uuid == SysfsValue::Unreadable {
            return None;
        }
        Some(BoardData {
            manufacturer: self.vendor.known(),
            model: self.product.known(),
            sn: self.serial.known(),
            // The kernel prints the UUID in lowercase, dmidecode in uppercase; one spelling keeps
            // a host from showing a change when it moves from one source to the other.
            uuid: self.uuid.known().map(|u| u.to_ascii_uppercase()),
        })
    }
}

/// Parses the probe's output; `None` when it is not that output at all.
pub fn parse_dmi_sysfs(text: &str) -> Option<DmiSysfs> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut found = match lines.next()? {
        "dmi: absent" => return Some(DmiSysfs::default()),
        "dmi: present" => DmiSysfs { present: true, ..DmiSysfs::default() },
        _ => return None,
    };
    for line in lines {
        let (name, value) = if let Some(name) = line.strip_suffix("! unreadable") {
            (name, SysfsValue::Unreadable)
        } else if let Some((name, value)) = line.split_once(':') {
            (name, SysfsValue::Value(value.trim().to_owned()))
        } else {
            continue;
        };
        let slot = match name.trim() {
            "sys_vendor" => &mut found.vendor,
            "product_name" => &mut found.product,
            "product_serial" => &mut found.serial,
            "product_uuid" => &mut found.uuid,
            _ => continue,
        };
        *slot = value;
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_reads_everything() {
        let text = "dmi: present\nsys_vendor: Dell Inc.\nproduct_name: PowerEdge R630\nproduct_serial: 2WF88P2\nproduct_uuid: 4c4c4544-0057-4610-8038-b2c04f385032\n";
        let sysfs = parse_dmi_sysfs(text).expect("recognized");
        assert_eq!(
            sysfs.board(),
            Some(BoardData {
                manufacturer: Some("Dell Inc.".into()),
                model: Some("PowerEdge R630".into()),
                sn: Some("2WF88P2".into()),
                uuid: Some("4C4C4544-0057-4610-8038-B2C04F385032".into()),
            })
        );
    }

    #[test]
    fn unreadable_identity_gives_no_board() {
        let text = "dmi: present\nsys_vendor: Dell Inc.\nproduct_name: PowerEdge R630\nproduct_serial! unreadable\nproduct_uuid! unreadable\n";
        let sysfs = parse_dmi_sysfs(text).expect("recognized");
        assert_eq!(sysfs.vendor, SysfsValue::Value("Dell Inc.".into()));
        assert_eq!(sysfs.board(), None);
    }

    #[test]
    fn absent_directory_means_no_board_identity() {
        let sysfs = parse_dmi_sysfs("dmi: absent\n").expect("recognized");
        assert!(!sysfs.present);
        assert_eq!(sysfs.board(), Some(BoardData::default()));
    }

    #[test]
    fn placeholders_and_unknown_output() {
        let text = "dmi: present\nsys_vendor: To Be Filled By O.E.M.\nproduct_serial: \nproduct_uuid: 03000200-0400-0500-0006-000700080009\n";
        let board = parse_dmi_sysfs(text).and_then(|s| s.board()).expect("complete");
        assert_eq!((board.manufacturer, board.sn), (None, None));
        assert_eq!(parse_dmi_sysfs("something else\n"), None);
        assert_eq!(parse_dmi_sysfs(""), None);
    }

    #[test]
    fn the_script_runs_under_sh() {
        let out = std::process::Command::new("sh").arg("-c").arg(SCRIPT).output().expect("sh runs");
        assert!(out.status.success());
        let parsed = parse_dmi_sysfs(&String::from_utf8_lossy(&out.stdout));
        assert!(parsed.is_some(), "{}", String::from_utf8_lossy(&out.stdout));
    }
}

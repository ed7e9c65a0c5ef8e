//! SMBIOS type 1, "System Information", as `dmidecode -t 1` prints it.
//!
//! Fields read: `Manufacturer`, `Product Name`, `Serial Number`, `UUID`. dmidecode <= 2.6 named
//! the record "System Information Block" and, on some builds, the first two fields `Vendor` and
//! `Product`; both spellings are accepted. Values are trimmed at both ends (vendors pad them with
//! spaces: `Product Name: ProLiant DL180 G6  `) and placeholders become `None`.

use cmdb_model::report::BoardData;

use super::dmidecode::{DmiRecord, known_value, parse_records};

/// Every title dmidecode has printed for SMBIOS type 1.
const TITLES: &[&str] = &["System Information", "System Information Block"];

/// Reads the first System Information record among `records`, if there is one.
pub fn find_system(records: &[DmiRecord]) -> Option<BoardData> {
    let record = records.iter().find(|r| r.is_type(1, TITLES))?;
    let field = |keys: &[&str]| record.get_any(keys).and_then(known_value);
    Some(BoardData {
        manufacturer: field(&["Manufacturer", "Vendor"]),
        model: field(&["Product Name", "Product"]),
        sn: field(&["Serial Number"]),
        uuid: field(&["UUID"]),
    })
}

/// Parses `dmidecode -t 1` output (any framing) into board data. Output without a System
/// Information record (a host without SMBIOS prints only a preamble) yields all fields `None`.
pub fn parse_system(text: &str) -> BoardData {
    find_system(&parse_records(text)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> String {
        let path = format!("{}/src/collectors/board/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn board(manufacturer: &str, model: &str, sn: Option<&str>, uuid: Option<&str>) -> BoardData {
        BoardData {
            manufacturer: Some(manufacturer.to_owned()),
            model: Some(model.to_owned()),
            sn: sn.map(str::to_owned),
            uuid: uuid.map(str::to_owned),
        }
    }

    #[test]
    fn fixtures() {
        assert_eq!(
            parse_system(&testdata("course-canonical.out")),
            board(
                "Parallels Software International Inc.",
                "Parallels Virtual Platform",
                Some("Parallels-1A 1B CB 3B 64 66 4B 13 86 B0 86 FF 7E 2B 20 30"),
                Some("3BCB1B1A-6664-134B-86B0-86FF7E2B2030"),
            )
        );
        assert_eq!(
            parse_system(&testdata("lenovo-rd650.out")),
            board("LENOVO", "ThinkServer RD650", Some("PC0C6Y1R"), Some("32D32CD4-550C-E611-98A0-3C18A004F5ED"))
        );
        assert_eq!(
            parse_system(&testdata("dell-r630.out")),
            board("Dell Inc.", "PowerEdge R630", Some("2WF88P2"), Some("4C4C4544-0057-4610-8038-B2C04F385032"))
        );
        assert_eq!(
            parse_system(&testdata("hp-dl180-g6.out")),
            board("HP", "ProLiant DL180 G6", Some("CZJ02901TG"), Some("00D3F681-FE8E-11D5-B656-1CC1DE0905AE"))
        );
        assert_eq!(
            parse_system(&testdata("oracle-x5-2-oda.out")),
            board(
                "Oracle Corporation",
                "ORACLE SERVER X5-2",
                Some("1634NM1100"),
                Some("080020FF-FFFF-FFFF-FFFF-0010E0BCD192")
            )
        );
        assert_eq!(parse_system(&testdata("this-vm.out")), BoardData::default());
    }

    #[test]
    fn external_samples() {
        // dmidecode 2.8 (Dell Latitude D610); the expected values are the file's own.
        assert_eq!(
            parse_system(&testdata("fusion-linux-2.6.out")),
            board("Dell Inc.", "Latitude D610", Some("D8XD62J"), Some("44454C4C-3800-1058-8044-C4C04F36324A"))
        );
        // dmidecode 2.5, old framing; the poster masked serial and UUID with X runs.
        assert_eq!(
            parse_system(&testdata("lkml-hp-nc6000-dmidecode-2.5.out")),
            board("Hewlett-Packard", "HP Compaq nc6000 (DJ254A#ABB)", None, None)
        );
        // dmidecode 3.0; the serial carries trailing blanks.
        assert_eq!(
            parse_system(&testdata("fusion-sun-x2200-m2.out")),
            board(
                "Sun Microsystems",
                "Sun Fire X2200 M2",
                Some("0732QBT057"),
                Some("E2699C60-CD79-0010-9A2E-001B245D80DC")
            )
        );
        // The oldest framing: "System Information Block" with Vendor/Product keys and no UUID.
        assert_eq!(parse_system(&testdata("fusion-rhel-2.1.out")), board("IBM", "-[84803AX]-", Some("KBKGW40"), None));
    }

    #[test]
    fn quiet_framing() {
        let text = "System Information\n\tManufacturer: Dell Inc.\n\tProduct Name: PowerEdge R640\n\tSerial Number: 1ABC234\n\tUUID: 4c4c4544-0042-4110-8043-b1c04f323334\n";
        assert_eq!(
            parse_system(text),
            board("Dell Inc.", "PowerEdge R640", Some("1ABC234"), Some("4c4c4544-0042-4110-8043-b1c04f323334"))
        );
    }

    #[test]
    fn placeholders_become_none() {
        let text = "Handle 0x0001, DMI type 1, 27 bytes\nSystem Information\n\tManufacturer: To Be Filled By O.E.M.\n\tProduct Name: Default string\n\tSerial Number: System Serial Number\n\tUUID: 00000000-0000-0000-0000-000000000000\n";
        assert_eq!(parse_system(text), BoardData::default());
        let text = "Handle 0x0001, DMI type 1, 27 bytes\nSystem Information\n\tManufacturer: System manufacturer\n\tProduct Name: System Product Name\n\tSerial Number: Not Specified\n\tUUID: Not Settable\n";
        assert_eq!(parse_system(text), BoardData::default());
    }

    #[test]
    fn only_the_system_record_counts() {
        // A full dump: Base Board Information also has Manufacturer and Serial Number.
        let text = "Handle 0x0002, DMI type 2, 8 bytes\nBase Board Information\n\tManufacturer: Intel\n\tSerial Number: BOARD1\n\nHandle 0x0001, DMI type 1, 27 bytes\nSystem Information\n\tManufacturer: Acme\n\tSerial Number: SYS1\n";
        let parsed = parse_system(text);
        assert_eq!((parsed.manufacturer.as_deref(), parsed.sn.as_deref()), (Some("Acme"), Some("SYS1")));
        let full = testdata("dell-r630-full.out");
        assert_eq!(parse_system(&full), parse_system(&testdata("dell-r630.out")));
    }
}

//! `/proc/meminfo`: `Key:   value kB` lines. Only `MemTotal` is read, as the memory total of
//! hosts whose firmware lists no DIMMs (VMs, most ARM boards).

/// `MemTotal` in kB (the kernel's kB are KiB), or `None` when the line is missing or malformed.
pub fn parse_mem_total_kb(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        if key.trim() != "MemTotal" {
            return None;
        }
        let mut words = value.split_whitespace();
        let number: u64 = words.next()?.parse().ok()?;
        match words.next().map(str::to_ascii_lowercase).as_deref() {
            None | Some("kb") => Some(number),
            Some(_) => None,
        }
    })
}

/// `MemTotal` in MiB, rounded down, as the memory section reports a total without DIMMs.
pub fn parse_mem_total_mib(text: &str) -> Option<u64> {
    parse_mem_total_kb(text).map(|kb| kb / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_vm() {
        let path = format!("{}/src/collectors/memory/testdata/this-vm.meminfo", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(path).expect("testdata");
        assert_eq!(parse_mem_total_kb(&text), Some(24_684_084));
        assert_eq!(parse_mem_total_mib(&text), Some(24_105));
    }

    #[test]
    fn malformed_or_missing() {
        assert_eq!(parse_mem_total_kb("MemFree: 12 kB\n"), None);
        assert_eq!(parse_mem_total_kb("MemTotal: lots kB\n"), None);
        assert_eq!(parse_mem_total_kb("MemTotal: 12 MB\n"), None);
        assert_eq!(parse_mem_total_kb("MemTotalX: 12 kB\nMemTotal:\t2048\n"), Some(2048));
        assert_eq!(parse_mem_total_kb(""), None);
    }
}

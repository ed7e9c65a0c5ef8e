//! `uname -a`: kernel name, node name, kernel release, kernel version, machine, and (GNU
//! coreutils, when known) processor, hardware platform and operating system, space-separated.
//!
//! The kernel version field contains spaces (`#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1
//! (2024-02-01)`), so the machine cannot be found by position from the start. Counting from the
//! end does not work either: GNU uname omits processor and platform when they are "unknown"
//! (Debian: `... x86_64 GNU/Linux`), prints them otherwise (RHEL: `... x86_64 x86_64 x86_64
//! GNU/Linux`), and Gentoo's patched uname prints the processor's marketing name, spaces
//! included. The machine is therefore the first token after the release that is a known
//! `uname -m` value; failing that, the last token before the operating system name.

/// The fields of `uname -a` this collector reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uname {
    /// Kernel name, e.g. "Linux".
    pub kernel_name: String,
    /// Network node name (the host name at boot).
    pub nodename: String,
    /// Kernel release, e.g. "6.1.0-18-amd64".
    pub kernel_release: String,
    /// Machine hardware name, e.g. "x86_64", when it could be told apart from the version.
    pub machine: Option<String>,
}

/// True for the machine names Linux's `uname -m` prints.
fn is_machine(token: &str) -> bool {
    const EXACT: &[&str] = &[
        "x86_64",
        "amd64",
        "i386",
        "i486",
        "i586",
        "i686",
        "athlon",
        "aarch64",
        "aarch64_be",
        "arm64",
        "arm",
        "armeb",
        "ppc",
        "ppcle",
        "ppc64",
        "ppc64le",
        "s390",
        "s390x",
        "mips",
        "mipsel",
        "mips64",
        "mips64el",
        "riscv32",
        "riscv64",
        "loongarch64",
        "sparc",
        "sparc64",
        "ia64",
        "alpha",
        "parisc",
        "parisc64",
        "sh4",
        "sh4a",
        "m68k",
        "e2k",
        "microblaze",
        "xtensa",
        "arc",
    ];
    EXACT.contains(&token)
        || token.strip_prefix("armv").is_some_and(|rest| rest.chars().next().is_some_and(|c| c.is_ascii_digit()))
}

/// Operating system names `uname -o` prints last.
fn is_operating_system(token: &str) -> bool {
    matches!(token.to_ascii_lowercase().as_str(), "gnu/linux" | "linux" | "android" | "toybox" | "gnu")
}

/// Parses the first non-empty line of `uname -a`; `None` when it has fewer than three fields.
pub fn parse_uname(text: &str) -> Option<Uname> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let [kernel_name, nodename, kernel_release, rest @ ..] = tokens.as_slice() else { return None };
    let machine = rest.iter().skip(1).find(|t| is_machine(t)).map(|t| (*t).to_owned()).or_else(|| {
        // An architecture this list does not know: skip the OS name and "unknown" fields and
        // take the last field left, provided the version field (at least "#1") precedes it.
        let mut end = rest.len();
        while end > 0 && (is_operating_system(rest[end - 1]) || rest[end - 1] == "unknown") {
            end -= 1;
        }
        (end >= 2).then(|| rest[end - 1].to_owned())
    });
    Some(Uname {
        kernel_name: (*kernel_name).to_owned(),
        nodename: (*nodename).to_owned(),
        kernel_release: (*kernel_release).to_owned(),
        machine,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine_and_release(text: &str) -> (String, Option<String>) {
        let parsed = parse_uname(text).expect("parses");
        (parsed.kernel_release, parsed.machine)
    }

    #[test]
    fn this_vm() {
        let path = format!("{}/src/collectors/basic/testdata/this-vm.uname", env!("CARGO_MANIFEST_DIR"));
        let parsed = parse_uname(&std::fs::read_to_string(path).expect("testdata")).expect("parses");
        assert_eq!(
            parsed,
            Uname {
                kernel_name: "Linux".into(),
                nodename: "vm".into(),
                kernel_release: "6.18.44-fc-v669".into(),
                machine: Some("x86_64".into()),
            }
        );
    }

    #[test]
    fn layouts() {
        let cases = [
            // Debian: processor and platform unknown, so omitted.
            (
                "Linux web-01 6.1.0-18-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01) x86_64 GNU/Linux",
                "6.1.0-18-amd64",
                "x86_64",
            ),
            // Ubuntu on a Kunpeng server (from a blog capture): machine, processor, platform.
            (
                "Linux ecs-931 4.15.0-72-generic #81-Ubuntu SMP Tue Nov 26 12:21:09 UTC 2019 aarch64 aarch64 aarch64 GNU/Linux",
                "4.15.0-72-generic",
                "aarch64",
            ),
            // CentOS 6.
            (
                "Linux db1 2.6.32-504.el6.x86_64 #1 SMP Wed Oct 15 04:27:16 UTC 2014 x86_64 x86_64 x86_64 GNU/Linux",
                "2.6.32-504.el6.x86_64",
                "x86_64",
            ),
            // Gentoo: the processor field is a marketing name with spaces.
            (
                "Linux box 6.6.13-gentoo #1 SMP Fri Jan 26 10:00:00 CET 2024 x86_64 Intel(R) Core(TM) i7-4790K CPU @ 4.00GHz GenuineIntel GNU/Linux",
                "6.6.13-gentoo",
                "x86_64",
            ),
            // Busybox/Alpine and a buildroot ppc64le console.
            ("Linux alpine 6.6.16-0-lts #1-Alpine SMP PREEMPT_DYNAMIC 2024 x86_64 Linux", "6.6.16-0-lts", "x86_64"),
            ("Linux buildroot 5.3.0-rc7 #1 SMP Wed Sep 4 14:34:53 IST 2019 ppc64le GNU/Linux", "5.3.0-rc7", "ppc64le"),
            ("Linux pi 6.1.21-v7+ #1642 SMP Mon Apr  3 17:20:52 BST 2023 armv7l GNU/Linux", "6.1.21-v7+", "armv7l"),
            // A machine name this parser has never heard of.
            ("Linux h 6.8.0 #1 SMP 2024 newarch64 newarch64 unknown GNU/Linux", "6.8.0", "newarch64"),
        ];
        for (text, release, machine) in cases {
            assert_eq!(machine_and_release(text), (release.to_owned(), Some(machine.to_owned())), "{text}");
        }
    }

    #[test]
    fn short_or_empty() {
        assert_eq!(parse_uname(""), None);
        assert_eq!(parse_uname("Linux host"), None);
        assert_eq!(machine_and_release("Linux host 6.1.0"), ("6.1.0".to_owned(), None));
        assert_eq!(machine_and_release("Linux host 6.1.0 #1"), ("6.1.0".to_owned(), None));
    }
}

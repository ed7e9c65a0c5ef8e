//! OpenSSH `known_hosts` files: parsing, host key checks and recording first-seen keys.
//!
//! The grammar is sshd(8)'s "SSH_KNOWN_HOSTS FILE FORMAT":
//!
//! ```text
//! [@marker] hostpatterns keytype base64-key [comment]
//! ```
//!
//! - `hostpatterns` is a comma-separated list of host names or addresses, `[host]:port` for a
//!   port other than 22, with `*` and `?` wildcards and `!` negation; or one hashed name
//!   `|1|base64(salt)|base64(HMAC-SHA1(salt, name))` (what `HashKnownHosts yes` writes).
//! - `@revoked` marks a key that must never be accepted, even where another line trusts it.
//! - `@cert-authority` marks a CA key: a host certificate it signed is trusted for the hosts
//!   the line names (checked in [`KnownHosts::check_certificate`]).
//! - Blank lines and lines starting with `#` are comments. Lines that cannot be parsed (an
//!   unknown key type, broken base64) are skipped with a warning, as OpenSSH does, so one bad
//!   line never locks every host out.
//!
//! The file is read once per run ([`KnownHosts::load`]), not once per host; keys recorded with
//! [`KnownHosts::learn`] are added to the in-memory copy too.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::{Certificate, HashAlg, PublicKey};
use sha1::Sha1;

/// A known_hosts file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KnownHostsError {
    /// Reading, locking or appending to the file failed.
    #[error("known_hosts file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The key could not be written in OpenSSH form (should not happen for keys a server sent).
    #[error("cannot encode the host key for {path}: {message}")]
    Encode {
        /// The file the key was meant for.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// The marker in front of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// A plain host key line.
    None,
    /// `@revoked`: this key is never accepted.
    Revoked,
    /// `@cert-authority`: this key signs host certificates.
    CertAuthority,
}

/// One comma-separated item of a host pattern list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// `|1|salt|hash`.
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
    /// A (lower-cased) pattern with optional wildcards.
    Plain { pattern: String, negated: bool },
}

/// One parsed line.
#[derive(Debug, Clone)]
struct Entry {
    marker: Marker,
    patterns: Vec<HostPattern>,
    key: PublicKey,
    /// 1-based line number, for messages.
    line: usize,
}

/// The outcome of checking a presented host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyCheck {
    /// A line trusts this key for this host.
    Trusted {
        /// The line that matched.
        line: usize,
    },
    /// No line names this host (with any key type): a first contact.
    Unknown,
    /// The host is known with a different key: a possible man-in-the-middle, or a reinstall.
    Changed {
        /// The fingerprint of the key the server presented.
        presented: String,
        /// The fingerprints recorded for this host, with their line numbers.
        recorded: Vec<(usize, String)>,
    },
    /// The key is marked `@revoked`.
    Revoked {
        /// The `@revoked` line.
        line: usize,
        /// The revoked key's fingerprint.
        fingerprint: String,
    },
    /// The host presented a certificate that no trusted authority vouches for.
    BadCertificate {
        /// Why it was refused.
        reason: String,
    },
}

/// The name a host is filed under: `host` on port 22, `[host]:port` otherwise, lower-cased.
pub fn host_key_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 { host } else { format!("[{host}]:{port}") }
}

/// The SHA-256 fingerprint of `key`, as `ssh-keygen -l` prints it (`SHA256:...`).
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Matches `text` against a glob with `*` (any run) and `?` (any one character), as OpenSSH's
/// match_pattern does. Iterative with backtracking to the last `*`, so no pattern can blow up.
fn glob_match(text: &[u8], pattern: &[u8]) -> bool {
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

fn hashed_name(salt: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(salt).ok()?;
    mac.update(name.as_bytes());
    Some(mac.finalize().into_bytes().to_vec())
}

/// True when the pattern list names `name` (already lower-cased): some item matches and no
/// negated item does (OpenSSH's match_hostname).
fn patterns_match(patterns: &[HostPattern], name: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
        match pattern {
            HostPattern::Hashed { salt, hash } => {
                if hashed_name(salt, name).is_some_and(|h| h == *hash) {
                    matched = true;
                }
            }
            HostPattern::Plain { pattern, negated } => {
                if glob_match(name.as_bytes(), pattern.as_bytes()) {
                    if *negated {
                        return false;
                    }
                    matched = true;
                }
            }
        }
    }
    matched
}

fn parse_patterns(field: &str) -> Option<Vec<HostPattern>> {
    let mut patterns = Vec::new();
    for item in field.split(',').filter(|i| !i.is_empty()) {
        if let Some(rest) = item.strip_prefix("|1|") {
            let (salt, hash) = rest.split_once('|')?;
            patterns.push(HostPattern::Hashed { salt: BASE64.decode(salt).ok()?, hash: BASE64.decode(hash).ok()? });
        } else if let Some(rest) = item.strip_prefix('!') {
            patterns.push(HostPattern::Plain { pattern: rest.to_ascii_lowercase(), negated: true });
        } else {
            patterns.push(HostPattern::Plain { pattern: item.to_ascii_lowercase(), negated: false });
        }
    }
    (!patterns.is_empty()).then_some(patterns)
}

/// Parses one line; `Ok(None)` for comments and blank lines, `Err` with a reason for lines
/// that look like entries but cannot be used.
fn parse_line(text: &str, line: usize) -> Result<Option<Entry>, String> {
    let text = text.trim();
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    let mut fields = text.split_ascii_whitespace();
    let mut first = fields.next().ok_or("empty line")?;
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        m if m.starts_with('@') => return Err(format!("unknown marker {m}")),
        _ => Marker::None,
    };
    if marker != Marker::None {
        first = fields.next().ok_or("marker without host patterns")?;
    }
    let patterns = parse_patterns(first).ok_or("unreadable host pattern list")?;
    let key_type = fields.next().ok_or("no key type")?;
    let key_base64 = fields.next().ok_or("no key")?;
    let key = PublicKey::from_openssh(&format!("{key_type} {key_base64}")).map_err(|e| format!("bad key: {e}"))?;
    Ok(Some(Entry { marker, patterns, key, line }))
}

fn parse_text(path: &Path, text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        match parse_line(line, index + 1) {
            Ok(Some(entry)) => entries.push(entry),
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(file = %path.display(), line = index + 1, %reason, "skipping known_hosts line")
            }
        }
    }
    entries
}

/// True when both keys are the same key (algorithm and key material; comments do not count).
fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    a.key_data() == b.key_data()
}

/// The checks against a list of entries, shared by the in-memory copy and the re-read file.
fn check_entries(entries: &[Entry], name: &str, key: &PublicKey) -> HostKeyCheck {
    let for_host: Vec<&Entry> = entries.iter().filter(|e| patterns_match(&e.patterns, name)).collect();
    if let Some(revoked) = for_host.iter().find(|e| e.marker == Marker::Revoked && same_key(&e.key, key)) {
        return HostKeyCheck::Revoked { line: revoked.line, fingerprint: fingerprint(key) };
    }
    let plain: Vec<&&Entry> = for_host.iter().filter(|e| e.marker == Marker::None).collect();
    if let Some(trusted) = plain.iter().find(|e| same_key(&e.key, key)) {
        return HostKeyCheck::Trusted { line: trusted.line };
    }
    if plain.is_empty() {
        return HostKeyCheck::Unknown;
    }
    // The host is known, but not with this key. OpenSSH treats a different key of the same type
    // as "changed" and a key of another type as "not in the list"; both mean that someone who
    // controls the path could be answering, so neither is accepted silently here.
    HostKeyCheck::Changed {
        presented: fingerprint(key),
        recorded: plain.iter().map(|e| (e.line, fingerprint(&e.key))).collect(),
    }
}

/// A known_hosts file, read once and shared by every connection of a run.
#[derive(Debug)]
pub struct KnownHosts {
    path: PathBuf,
    entries: RwLock<Vec<Entry>>,
    /// Serialises [`KnownHosts::learn`] inside this process; `flock` does it across processes.
    learning: Mutex<()>,
}

impl KnownHosts {
    /// Reads `path`. A file that does not exist is an empty list (every host is unknown), so a
    /// first run with `AcceptNew` can create it.
    pub fn load(path: &Path) -> Result<Self, KnownHostsError> {
        let text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(KnownHostsError::Io { path: path.to_owned(), source }),
        };
        Ok(Self::parse(path, &text))
    }

    /// Parses `text` as the contents of `path` (which [`KnownHosts::learn`] appends to).
    pub fn parse(path: &Path, text: &str) -> Self {
        KnownHosts { path: path.to_owned(), entries: RwLock::new(parse_text(path, text)), learning: Mutex::new(()) }
    }

    /// The file this list came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of usable lines (plain, revoked and CA entries).
    pub fn len(&self) -> usize {
        self.read_entries().len()
    }

    /// True when no line is usable.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read_entries(&self) -> std::sync::RwLockReadGuard<'_, Vec<Entry>> {
        // A poisoned lock only means another thread panicked while holding it; the list itself
        // is always left whole (entries are pushed, never edited in place).
        self.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Checks the plain key `key` presented by `host` on `port`.
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> HostKeyCheck {
        check_entries(&self.read_entries(), &host_key_name(host, port), key)
    }

    /// The key algorithms recorded for `host` (plain lines), so a client can ask the server for
    /// a key it can verify rather than one it would have to call unknown.
    pub fn known_algorithms(&self, host: &str, port: u16) -> Vec<russh::keys::Algorithm> {
        let name = host_key_name(host, port);
        let mut algorithms = Vec::new();
        for entry in self.read_entries().iter() {
            if entry.marker == Marker::None && patterns_match(&entry.patterns, &name) {
                let algorithm = entry.key.algorithm();
                if !algorithms.contains(&algorithm) {
                    algorithms.push(algorithm);
                }
            }
        }
        algorithms
    }

    /// True when an `@cert-authority` line covers `host`, i.e. host certificates are worth asking for.
    pub fn has_cert_authority(&self, host: &str, port: u16) -> bool {
        let name = host_key_name(host, port);
        self.read_entries().iter().any(|e| e.marker == Marker::CertAuthority && patterns_match(&e.patterns, &name))
    }

    /// Checks a host certificate: signed by an `@cert-authority` key listed for this host, valid
    /// at `unix_now`, a host (not user) certificate, naming `host` among its principals, with no
    /// critical options, and neither the CA key nor the certificate's key `@revoked`.
    pub fn check_certificate(&self, host: &str, port: u16, cert: &Certificate, unix_now: u64) -> HostKeyCheck {
        let name = host_key_name(host, port);
        let entries = self.read_entries();
        let ca_key = PublicKey::new(cert.signature_key().clone(), "");
        let cert_key = PublicKey::new(cert.public_key().clone(), "");
        for key in [&ca_key, &cert_key] {
            if let Some(revoked) = entries
                .iter()
                .find(|e| e.marker == Marker::Revoked && patterns_match(&e.patterns, &name) && same_key(&e.key, key))
            {
                return HostKeyCheck::Revoked { line: revoked.line, fingerprint: fingerprint(key) };
            }
        }
        let Some(ca) = entries.iter().find(|e| {
            e.marker == Marker::CertAuthority && patterns_match(&e.patterns, &name) && same_key(&e.key, &ca_key)
        }) else {
            return HostKeyCheck::BadCertificate {
                reason: format!("certificate signed by {}, which is not a listed authority", fingerprint(&ca_key)),
            };
        };
        if cert.cert_type() != CertType::Host {
            return HostKeyCheck::BadCertificate { reason: "a user certificate, not a host certificate".into() };
        }
        let ca_fingerprint = ca.key.fingerprint(HashAlg::Sha256);
        if cert.validate_at(unix_now, [&ca_fingerprint]).is_err() {
            return HostKeyCheck::BadCertificate {
                reason: "certificate signature invalid or outside its validity period".into(),
            };
        }
        let bare_host = host.to_ascii_lowercase();
        if !cert.valid_principals().iter().any(|p| p.to_ascii_lowercase() == bare_host) {
            return HostKeyCheck::BadCertificate {
                reason: format!("certificate principals {:?} do not include {host}", cert.valid_principals()),
            };
        }
        if !cert.critical_options().is_empty() {
            return HostKeyCheck::BadCertificate { reason: "host certificate carries critical options".into() };
        }
        HostKeyCheck::Trusted { line: ca.line }
    }

    /// Records `key` for `host` (first contact with `AcceptNew`) and returns the check as it
    /// stands once the file is locked: another process may have recorded the same host first, in
    /// which case nothing is written and its key is compared instead.
    ///
    /// The append is one `write` of one whole line under an exclusive `flock`, with `O_APPEND`,
    /// then `fsync`: concurrent runs never interleave or lose lines, and a crash leaves at most a
    /// missing line, never half of one. With `hash_name`, the host name is written hashed.
    /// Blocking; call it from `spawn_blocking` in async code.
    pub fn learn(
        &self,
        host: &str,
        port: u16,
        key: &PublicKey,
        hash_name: bool,
    ) -> Result<HostKeyCheck, KnownHostsError> {
        let io = |source| KnownHostsError::Io { path: self.path.clone(), source };
        let _serialised = self.learning.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut file: File = OpenOptions::new().read(true).append(true).create(true).open(&self.path).map_err(io)?;
        file.lock().map_err(io)?;
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.read_to_end(&mut bytes).map_err(io)?;
        let on_disk = parse_text(&self.path, &String::from_utf8_lossy(&bytes));
        let name = host_key_name(host, port);
        let check = check_entries(&on_disk, &name, key);
        let mut entries = on_disk;
        if check == HostKeyCheck::Unknown {
            let patterns_field = if hash_name {
                let mut salt = [0u8; 20];
                rand::fill(&mut salt[..]);
                let hash = hashed_name(&salt, &name).unwrap_or_default();
                format!("|1|{}|{}", BASE64.encode(salt), BASE64.encode(hash))
            } else {
                name.clone()
            };
            let mut bare = key.clone();
            bare.set_comment("");
            let key_text = bare
                .to_openssh()
                .map_err(|e| KnownHostsError::Encode { path: self.path.clone(), message: e.to_string() })?;
            let separator = if bytes.is_empty() || bytes.ends_with(b"\n") { "" } else { "\n" };
            let line = format!("{separator}{patterns_field} {}\n", key_text.trim());
            file.write_all(line.as_bytes()).map_err(io)?;
            file.sync_data().map_err(io)?;
            let line_number = bytes.iter().filter(|&&b| b == b'\n').count() + 1 + usize::from(!separator.is_empty());
            if let Ok(Some(entry)) = parse_line(line.trim(), line_number) {
                entries.push(entry);
            }
        }
        // The lock is released when `file` is dropped; refresh the shared copy first so every
        // later host of this run sees what is now on disk.
        *self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = entries;
        drop(file);
        Ok(check)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real public keys, made with ssh-keygen for these tests.
    const KEY_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIFPz76ggCaPqei4LOyJtRSD3O86oOYuPnI2oGXaPQ/C";
    const KEY_B: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHTCfxjchZGLF5QBpCIJsj6PA1hdptuEh8LO5JQNQmQX";
    const KEY_C: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBJ3b9w68lJcIMkc4OA6Qp3SwJNXPE8Qf5nwi7Jl3SCaA5w4FVoqqba5Q4rPXEOLDYM4jA4kuSQ6JUOHcrr6YYcI=";

    fn key(text: &str) -> PublicKey {
        PublicKey::from_openssh(text).expect("test key parses")
    }

    fn hashed(name: &str, salt: &[u8]) -> String {
        let hash = hashed_name(salt, name).expect("hmac");
        format!("|1|{}|{}", BASE64.encode(salt), BASE64.encode(hash))
    }

    fn list(text: &str) -> KnownHosts {
        KnownHosts::parse(Path::new("test_known_hosts"), text)
    }

    #[test]
    fn glob_matches_like_openssh() {
        assert!(glob_match(b"web-01.example.com", b"*.example.com"));
        assert!(glob_match(b"10.0.0.7", b"10.0.0.?"));
        assert!(!glob_match(b"10.0.0.17", b"10.0.0.?"));
        assert!(glob_match(b"[10.0.0.5]:2222", b"[10.0.0.*]:2222"));
        assert!(!glob_match(b"[10.0.0.5]:2223", b"[10.0.0.*]:2222"));
        assert!(glob_match(b"abc", b"a*b*c*"));
        assert!(!glob_match(b"abd", b"a*c"));
        assert!(glob_match(b"", b"*"));
    }

    #[test]
    fn plain_port_and_list_entries() {
        let hosts = list(&format!(
            "# a comment\n\n\
             web-01,10.0.0.1 {KEY_A} root@web-01\n\
             [db-01]:2222 {KEY_B}\n"
        ));
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts.check("web-01", 22, &key(KEY_A)), HostKeyCheck::Trusted { line: 3 });
        assert_eq!(hosts.check("10.0.0.1", 22, &key(KEY_A)), HostKeyCheck::Trusted { line: 3 });
        assert_eq!(
            hosts.check("WEB-01", 22, &key(KEY_A)),
            HostKeyCheck::Trusted { line: 3 },
            "names are case-insensitive"
        );
        // A port other than 22 is only matched by a [host]:port entry.
        assert_eq!(hosts.check("web-01", 2222, &key(KEY_A)), HostKeyCheck::Unknown);
        assert_eq!(hosts.check("db-01", 2222, &key(KEY_B)), HostKeyCheck::Trusted { line: 4 });
        assert_eq!(hosts.check("db-01", 22, &key(KEY_B)), HostKeyCheck::Unknown);
        match hosts.check("db-01", 2222, &key(KEY_A)) {
            HostKeyCheck::Changed { presented, recorded } => {
                assert_eq!(presented, fingerprint(&key(KEY_A)));
                assert_eq!(recorded, vec![(4, fingerprint(&key(KEY_B)))]);
            }
            other => panic!("expected Changed, got {other:?}"),
        }
    }

    #[test]
    fn hashed_entries_match_only_their_name() {
        let salt = [7u8; 20];
        let hosts = list(&format!("{} {KEY_A}\n{} {KEY_B}\n", hashed("web-01", &salt), hashed("[db-01]:2222", &salt)));
        assert_eq!(hosts.check("web-01", 22, &key(KEY_A)), HostKeyCheck::Trusted { line: 1 });
        assert_eq!(hosts.check("web-02", 22, &key(KEY_A)), HostKeyCheck::Unknown);
        assert_eq!(hosts.check("db-01", 2222, &key(KEY_B)), HostKeyCheck::Trusted { line: 2 });
        assert!(matches!(hosts.check("web-01", 22, &key(KEY_B)), HostKeyCheck::Changed { .. }));
    }

    #[test]
    fn openssh_hashed_entries_from_ssh_keygen() {
        // Written by `ssh-keygen -H` from "127.0.0.2 KEY_A" and "[127.0.0.3]:2222 KEY_B".
        let hosts = list(&format!(
            "|1|NnRdXDSWjR0ljEPSuD3C137x7ak=|dIQxkobP3EOQhcTY5EUvnIE8A3M= {KEY_A}\n\
             |1|rM4x9B5eIykoG+j5B1MPZf/lUuA=|cCNwAcRlfhkuY3d8Bp15/JQDKnU= {KEY_B}\n"
        ));
        assert_eq!(hosts.check("127.0.0.2", 22, &key(KEY_A)), HostKeyCheck::Trusted { line: 1 });
        assert_eq!(hosts.check("127.0.0.3", 2222, &key(KEY_B)), HostKeyCheck::Trusted { line: 2 });
        assert_eq!(hosts.check("127.0.0.3", 22, &key(KEY_B)), HostKeyCheck::Unknown);
        assert_eq!(hosts.check("127.0.0.4", 2222, &key(KEY_B)), HostKeyCheck::Unknown);
    }

    #[test]
    fn wildcards_and_negation() {
        let hosts = list(&format!("*.prod.example.com,!bastion.prod.example.com {KEY_A}\n"));
        assert!(matches!(hosts.check("web.prod.example.com", 22, &key(KEY_A)), HostKeyCheck::Trusted { .. }));
        assert_eq!(hosts.check("bastion.prod.example.com", 22, &key(KEY_A)), HostKeyCheck::Unknown);
        assert_eq!(hosts.check("web.dev.example.com", 22, &key(KEY_A)), HostKeyCheck::Unknown);
    }

    #[test]
    fn revoked_keys_lose_even_against_a_trusting_line() {
        let hosts = list(&format!("web-01 {KEY_A}\n@revoked * {KEY_A}\n"));
        assert_eq!(
            hosts.check("web-01", 22, &key(KEY_A)),
            HostKeyCheck::Revoked { line: 2, fingerprint: fingerprint(&key(KEY_A)) }
        );
        // A revoked line says nothing about other keys and does not make a host "known".
        assert_eq!(list(&format!("@revoked * {KEY_A}\n")).check("web-01", 22, &key(KEY_B)), HostKeyCheck::Unknown);
    }

    #[test]
    fn cert_authority_lines_do_not_trust_plain_keys() {
        let hosts = list(&format!("@cert-authority *.example.com {KEY_A}\n"));
        assert!(hosts.has_cert_authority("web.example.com", 22));
        assert!(!hosts.has_cert_authority("web.example.org", 22));
        assert_eq!(hosts.check("web.example.com", 22, &key(KEY_A)), HostKeyCheck::Unknown);
    }

    #[test]
    fn bad_lines_are_skipped_not_fatal() {
        let hosts = list(&format!(
            "web-01 ssh-ed25519 not-base64!!\n@bogus web-01 {KEY_A}\nweb-01 ssh-unknown AAAA\nweb-01\n|1|broken {KEY_A}\nweb-01 {KEY_B}\n"
        ));
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts.check("web-01", 22, &key(KEY_B)), HostKeyCheck::Trusted { line: 6 });
    }

    #[test]
    fn known_algorithms_lists_recorded_types() {
        let hosts = list(&format!("web-01 {KEY_A}\nweb-01 {KEY_B}\nweb-01 {KEY_C}\nother {KEY_A}\n"));
        assert_eq!(
            hosts.known_algorithms("web-01", 22),
            vec![
                russh::keys::Algorithm::Ed25519,
                russh::keys::Algorithm::Ecdsa { curve: russh::keys::EcdsaCurve::NistP256 }
            ]
        );
        // A key of another type than the recorded ones is not accepted silently either.
        assert!(matches!(
            list(&format!("web-01 {KEY_A}\n")).check("web-01", 22, &key(KEY_C)),
            HostKeyCheck::Changed { .. }
        ));
        assert!(hosts.known_algorithms("nobody", 22).is_empty());
    }

    #[test]
    fn learn_appends_once_and_then_detects_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/known_hosts");
        let hosts = KnownHosts::load(&path).expect("missing file is empty");
        assert!(hosts.is_empty());
        assert_eq!(hosts.learn("10.1.1.1", 2200, &key(KEY_A), false).expect("learn"), HostKeyCheck::Unknown);
        assert_eq!(hosts.check("10.1.1.1", 2200, &key(KEY_A)), HostKeyCheck::Trusted { line: 1 });
        // Learning again (a second process would see this on disk) writes nothing more.
        assert!(matches!(
            hosts.learn("10.1.1.1", 2200, &key(KEY_A), false).expect("learn"),
            HostKeyCheck::Trusted { .. }
        ));
        assert!(matches!(
            hosts.learn("10.1.1.1", 2200, &key(KEY_B), false).expect("learn"),
            HostKeyCheck::Changed { .. }
        ));
        let text = std::fs::read_to_string(&path).expect("written");
        assert_eq!(text, format!("[10.1.1.1]:2200 {KEY_A}\n"));
        // A fresh load reads back what was written, and a hashed entry works the same.
        let again = KnownHosts::load(&path).expect("load");
        assert!(matches!(again.check("10.1.1.1", 2200, &key(KEY_A)), HostKeyCheck::Trusted { .. }));
        assert_eq!(again.learn("web-9", 22, &key(KEY_B), true).expect("learn"), HostKeyCheck::Unknown);
        let text = std::fs::read_to_string(&path).expect("written");
        let last = text.lines().last().expect("two lines");
        assert!(last.starts_with("|1|") && !last.contains("web-9"), "{last}");
        let reloaded = KnownHosts::load(&path).expect("load");
        assert_eq!(reloaded.check("web-9", 22, &key(KEY_B)), HostKeyCheck::Trusted { line: 2 });
    }

    #[test]
    fn learn_adds_a_newline_when_the_file_lacks_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, format!("web-01 {KEY_A}")).expect("write");
        let hosts = KnownHosts::load(&path).expect("load");
        hosts.learn("web-02", 22, &key(KEY_B), false).expect("learn");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, format!("web-01 {KEY_A}\nweb-02 {KEY_B}\n"));
        assert_eq!(hosts.check("web-02", 22, &key(KEY_B)), HostKeyCheck::Trusted { line: 2 });
    }

    #[test]
    fn concurrent_learners_write_one_line_per_host() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("known_hosts");
        // Two independent lists on one file stand in for two processes; each learns 50 hosts
        // and both try the same names, so half the attempts must find the other's line.
        let first = std::sync::Arc::new(KnownHosts::load(&path).expect("load"));
        let second = std::sync::Arc::new(KnownHosts::load(&path).expect("load"));
        let threads: Vec<_> = [first, second]
            .into_iter()
            .map(|hosts| {
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let check = hosts.learn(&format!("h{i}"), 22, &key(KEY_A), false).expect("learn");
                        assert!(matches!(check, HostKeyCheck::Unknown | HostKeyCheck::Trusted { .. }), "{check:?}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 50, "{text}");
        assert!(text.lines().all(|l| l.ends_with(KEY_A.split(' ').nth(1).expect("b64"))));
    }
}

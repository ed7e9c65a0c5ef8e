//! The directory (LDAP) client: checks a person's name and password against the directory and
//! maps their groups to a role. It knows LDAP alone: accounts, sessions and the throttle are the
//! caller's (`web::users`, `web::pages::auth`).
//!
//! One login is one short connection: TLS (StartTLS on `ldap://`, TLS from the first byte on
//! `ldaps://`; there is no plain-text mode, so neither the service password nor the person's ever
//! crosses the network in clear), a bind as the service account, a search for the person's entry
//! with the configured filter (the name escaped per RFC 4515, so `*)(uid=*` is a literal name and
//! not a filter), the person's groups, and last a bind as the person's entry with their password.
//! An empty password is refused before anything is sent: RFC 4513 makes a simple bind with a name
//! and no password an "unauthenticated bind" that many servers accept.
//!
//! Whether the directory answers is remembered ([`Directory::reachable`]) so the login page can
//! say it is down without making people wait for a connection to time out.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ldap3::{LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry};

use crate::auth::Role;
use crate::config::LdapConfig;

/// How long a probe's answer about reachability is believed before the next page view probes again.
pub const HEALTH_TTL: Duration = Duration::from_secs(5);

/// LDAP result code 49: the name or password is wrong (RFC 4511 appendix A).
const INVALID_CREDENTIALS: u32 = 49;

/// Longest password sent to the directory (bytes), as for local accounts.
const MAX_PASSWORD_LEN: usize = 256;

/// Directory logins in flight at once. Local logins are bounded by the hashing slots; these hold
/// no CPU but a connection to the directory each, and a burst of them must not become a flood of
/// connections to a shared directory.
pub const LOGIN_SLOTS: usize = 16;

/// Why the directory could not decide.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The `[ldap]` section or a file it names is unusable.
    #[error("directory configuration: {0}")]
    Config(String),
    /// The directory did not answer, refused TLS, or refused the service account.
    #[error("the directory is unreachable: {0}")]
    Unreachable(String),
    /// The filter found more than one entry for one name: the filter is too wide.
    #[error("the user filter matches {0} entries for one name; it must match at most one")]
    Ambiguous(usize),
    /// Every directory login slot stayed busy for the timeout: too many directory logins at once.
    #[error("too many directory logins at once")]
    Busy,
}

/// What the directory says about a name and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No such entry, or the password is wrong (the caller cannot tell which).
    Refused,
    /// The password is right. `role` is the highest role of the mapped groups the entry is in, or
    /// `None` when it is in no mapped group (and must not get in).
    Accepted {
        /// The person's entry.
        dn: String,
        /// The role its groups grant.
        role: Option<Role>,
    },
}

/// The password of the service account, kept out of debug output.
struct BindPassword(String);

impl std::fmt::Debug for BindPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BindPassword(..)")
    }
}

#[derive(Debug, Clone, Copy)]
struct Health {
    checked_at: Option<Instant>,
    reachable: bool,
    probing: bool,
}

/// A configured directory.
#[derive(Debug)]
pub struct Directory {
    config: LdapConfig,
    bind_password: BindPassword,
    /// Group DN (normalized) -> role.
    groups: BTreeMap<String, Role>,
    /// The TLS client configuration when `ca_file` is set (otherwise the system's roots).
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    health: Mutex<Health>,
    slots: tokio::sync::Semaphore,
}

/// `value` escaped for use inside an LDAP search filter (RFC 4515: `*`, `(`, `)`, `\` and NUL
/// become `\2a`, `\28`, `\29`, `\5c`, `\00`).
pub fn escape_filter_value(value: &str) -> String {
    ldap3::ldap_escape(value).into_owned()
}

/// The search filter for `username`: the configured filter with each `{username}` replaced by the
/// escaped name.
pub fn user_filter(template: &str, username: &str) -> String {
    template.replace("{username}", &escape_filter_value(username))
}

/// A DN in the form groups are compared in: lowercase, no spaces around `,` and `=`. (Attribute
/// names and the usual values are case-insensitive; directories differ in the spaces they keep.)
pub fn normalize_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| rdn.split('=').map(str::trim).collect::<Vec<_>>().join("="))
        .collect::<Vec<_>>()
        .join(",")
        .to_lowercase()
}

/// Reads the service account's password: the file's first line. A file other local users can
/// read is refused, as `ssh` refuses such a key: that password reads the whole directory.
fn read_bind_password(path: &Path) -> Result<String, DirectoryError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| DirectoryError::Config(format!("ldap.bind_password_file {}: {e}", path.display())))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(DirectoryError::Config(format!(
                "ldap.bind_password_file {} has mode {mode:o}: other local users can read it; run chmod 600 on it",
                path.display()
            )));
        }
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| DirectoryError::Config(format!("ldap.bind_password_file {}: {e}", path.display())))?;
    let password = text.lines().next().unwrap_or("").to_owned();
    if password.is_empty() {
        return Err(DirectoryError::Config(format!("ldap.bind_password_file {} is empty", path.display())));
    }
    Ok(password)
}

/// A TLS client configuration that trusts the certificates in `ca_file` (PEM) alone.
fn tls_config(ca_file: &Path) -> Result<Arc<rustls::ClientConfig>, DirectoryError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |e: &dyn std::fmt::Display| DirectoryError::Config(format!("ldap.ca_file {}: {e}", ca_file.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| bad(&e))? {
        roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    if roots.is_empty() {
        return Err(bad(&"holds no PEM certificate"));
    }
    // The provider is named rather than taken from the process default, which depends on what
    // else in the binary enabled rustls features.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Describes an LDAP error without anything the caller sent (no password is in it anyway: binds
/// fail with a result code and the server's text).
fn describe(error: &LdapError) -> String {
    error.to_string()
}

impl Directory {
    /// The directory of `config`: reads the service account's password and the CA file now, so a
    /// broken configuration stops the start instead of the first login.
    pub fn new(config: &LdapConfig) -> Result<Directory, DirectoryError> {
        let bind_password = read_bind_password(&config.bind_password_file)?;
        let tls = config.ca_file.as_deref().map(tls_config).transpose()?;
        let groups = config.groups.iter().map(|(dn, role)| (normalize_dn(dn), *role)).collect();
        Ok(Directory {
            config: config.clone(),
            bind_password: BindPassword(bind_password),
            groups,
            tls,
            timeout: Duration::from_secs(config.timeout_secs.max(1)),
            health: Mutex::new(Health { checked_at: None, reachable: true, probing: false }),
            slots: tokio::sync::Semaphore::new(LOGIN_SLOTS),
        })
    }

    /// A TLS connection bound as the service account.
    async fn connect(&self) -> Result<ldap3::Ldap, DirectoryError> {
        let starttls = self.config.url.to_ascii_lowercase().starts_with("ldap://");
        let mut settings = LdapConnSettings::new().set_conn_timeout(self.timeout).set_starttls(starttls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let (conn, mut ldap) =
            tokio::time::timeout(self.timeout, LdapConnAsync::with_settings(settings, &self.config.url))
                .await
                .map_err(|_| DirectoryError::Unreachable("timed out connecting".to_owned()))?
                .map_err(|e| DirectoryError::Unreachable(describe(&e)))?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "directory connection ended");
            }
        });
        ldap.with_timeout(self.timeout)
            .simple_bind(&self.config.bind_dn, &self.bind_password.0)
            .await
            .and_then(ldap3::LdapResult::success)
            .map_err(|e| DirectoryError::Unreachable(format!("the service account's bind failed: {}", describe(&e))))?;
        Ok(ldap)
    }

    /// Checks `username` and `password` (see the module documentation for the steps).
    pub async fn authenticate(&self, username: &str, password: &str) -> Result<Verdict, DirectoryError> {
        if password.is_empty() || password.len() > MAX_PASSWORD_LEN || username.is_empty() {
            return Ok(Verdict::Refused);
        }
        let _slot = tokio::time::timeout(self.timeout, self.slots.acquire())
            .await
            .map_err(|_| DirectoryError::Busy)?
            .map_err(|_| DirectoryError::Busy)?;
        let outcome = tokio::time::timeout(self.timeout * 4, self.authenticate_inner(username, password))
            .await
            .unwrap_or_else(|_| Err(DirectoryError::Unreachable("timed out".to_owned())));
        match &outcome {
            Ok(_) => self.record_health(true),
            Err(DirectoryError::Unreachable(_)) => self.record_health(false),
            Err(_) => {}
        }
        outcome
    }

    async fn authenticate_inner(&self, username: &str, password: &str) -> Result<Verdict, DirectoryError> {
        let mut ldap = self.connect().await?;
        let unreachable = |e: LdapError| DirectoryError::Unreachable(describe(&e));
        let filter = user_filter(&self.config.user_filter, username);
        // "1.1" asks for no attributes (RFC 4511 4.5.1.8): only the DN is needed then.
        let attrs = vec![self.config.member_attribute.clone().unwrap_or_else(|| "1.1".to_owned())];
        let (entries, _) = ldap
            .with_timeout(self.timeout)
            .search(&self.config.user_base, Scope::Subtree, &filter, attrs)
            .await
            .and_then(ldap3::SearchResult::success)
            .map_err(unreachable)?;
        let entries: Vec<SearchEntry> = entries.into_iter().filter_map(construct).collect();
        let entry = match entries.as_slice() {
            [] => {
                let _ = ldap.unbind().await;
                return Ok(Verdict::Refused);
            }
            [entry] => entry.clone(),
            more => {
                let _ = ldap.unbind().await;
                return Err(DirectoryError::Ambiguous(more.len()));
            }
        };
        let mut member_of: Vec<String> = match &self.config.member_attribute {
            Some(attribute) => entry
                .attrs
                .iter()
                .filter(|(name, _)| name.eq_ignore_ascii_case(attribute))
                .flat_map(|(_, values)| values.iter().cloned())
                .collect(),
            None => Vec::new(),
        };
        if let Some(group_base) = &self.config.group_base {
            // The entry's DN is escaped like the name: a DN may hold `(`, `*` or `\`.
            let group_filter = self
                .config
                .group_filter
                .replace("{dn}", &escape_filter_value(&entry.dn))
                .replace("{username}", &escape_filter_value(username));
            let (groups, _) = ldap
                .with_timeout(self.timeout)
                .search(group_base, Scope::Subtree, &group_filter, vec!["1.1"])
                .await
                .and_then(ldap3::SearchResult::success)
                .map_err(unreachable)?;
            member_of.extend(groups.into_iter().filter_map(construct).map(|group| group.dn));
        }
        let bound = ldap.with_timeout(self.timeout).simple_bind(&entry.dn, password).await.map_err(unreachable)?;
        let _ = ldap.unbind().await;
        if bound.rc == INVALID_CREDENTIALS {
            return Ok(Verdict::Refused);
        }
        if bound.rc != 0 {
            // Anything else (a locked account, a password policy) is a refusal too, but worth a
            // line for whoever runs the directory.
            tracing::info!(rc = bound.rc, text = %bound.text, "the directory refused a bind");
            return Ok(Verdict::Refused);
        }
        let role = member_of.iter().filter_map(|group| self.groups.get(&normalize_dn(group)).copied()).max();
        Ok(Verdict::Accepted { dn: entry.dn, role })
    }

    fn record_health(&self, reachable: bool) {
        if let Ok(mut health) = self.health.lock() {
            health.checked_at = Some(Instant::now());
            health.reachable = reachable;
        }
    }

    /// Whether the directory answered the last time it was asked. When that answer is older than
    /// [`HEALTH_TTL`], a probe (connect, TLS, service bind) starts in the background and this
    /// returns the previous answer, so a page never waits for a directory that does not answer.
    pub fn reachable(self: &Arc<Self>) -> bool {
        let Ok(mut health) = self.health.lock() else { return true };
        let stale = health.checked_at.is_none_or(|at| at.elapsed() >= HEALTH_TTL);
        if stale && !health.probing {
            health.probing = true;
            let directory = self.clone();
            tokio::spawn(async move {
                let reachable = match directory.connect().await {
                    Ok(mut ldap) => {
                        let _ = ldap.unbind().await;
                        true
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the directory is unreachable");
                        false
                    }
                };
                if let Ok(mut health) = directory.health.lock() {
                    *health = Health { checked_at: Some(Instant::now()), reachable, probing: false };
                }
            });
        }
        health.reachable
    }
}

/// A search result entry, or `None` when its encoding is broken (ldap3 panics on that; a broken
/// answer from the directory is a refusal, not a crashed request).
fn construct(entry: ldap3::ResultEntry) -> Option<SearchEntry> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| SearchEntry::construct(entry))).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_change_the_filter() {
        let filter = user_filter("(&(objectClass=inetOrgPerson)(uid={username}))", "*)(uid=*");
        assert_eq!(filter, "(&(objectClass=inetOrgPerson)(uid=\\2a\\29\\28uid=\\2a))");
        assert_eq!(user_filter("(uid={username})", "a\\b\0"), "(uid=a\\5cb\\00)");
        assert_eq!(user_filter("(uid={username})", "alice"), "(uid=alice)");
        // The escaped filter is still one valid equality filter.
        assert!(ldap3::parse_filter(&filter).is_ok());
    }

    #[test]
    fn group_dns_compare_without_case_or_spaces() {
        assert_eq!(normalize_dn("CN=Admins, OU=Groups,dc = Example"), "cn=admins,ou=groups,dc=example");
    }

    #[test]
    fn a_bind_password_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bind");
        std::fs::write(&path, "secret\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = read_bind_password(&path).expect_err("world-readable");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(read_bind_password(&path).expect("private"), "secret");
    }
}

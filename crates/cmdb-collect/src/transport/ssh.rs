//! SSH transport: one russh connection and one exec per host, host keys verified.
//!
//! For each host, [`SshClient::run`] opens one TCP connection, checks the host key against the
//! known_hosts file, authenticates, opens one session channel and execs `sh -s`, writes the
//! bundled script on its stdin followed by EOF, and collects stdout, stderr and the exit status.
//! Feeding the script on stdin means the remote login shell only ever parses `sh -s` (csh and
//! fish users included) and there is no argv length limit. Then the connection is closed.
//!
//! What is done once per run, in [`SshClient::new`], not once per host: reading and decrypting
//! the private key, reading and parsing known_hosts, building the algorithm preferences.
//!
//! # File descriptors
//!
//! A host in flight holds exactly one TCP socket, plus, with [`SshAuth::Agent`], one Unix socket
//! to the agent while it authenticates, plus, with [`HostKeyPolicy::AcceptNew`], the known_hosts
//! file for the moment a first-seen key is appended. Nothing is kept once `run` returns. So a run
//! at concurrency C needs about 2 x C + a few descriptors: 64 hosts at once fit the common soft
//! limit of 1024; a caller running 1,000 hosts at once must raise RLIMIT_NOFILE to ~2,100.
//!
//! # Timeouts
//!
//! `connect_timeout` bounds TCP connect, the SSH handshake and authentication together;
//! `command_timeout` bounds the exec. On a command timeout the remote process group is sent
//! SIGKILL and the connection is closed. OpenSSH (>= 7.9) honours that "signal" request for
//! ordinary users but refuses it for root logins (they skip privilege separation, which sshd
//! needs to signal a session); there, and with servers that ignore it, what bounds the remote
//! side is that every probe of the bundled script runs under its own `timeout`, and a script
//! whose connection is gone dies of SIGPIPE at its next write. A remote wrapper (`timeout sh -s`)
//! would cover root too, but it costs every host two more processes and four more execs (about
//! 5 ms of CPU each on the 2-core test machine, 0.13 s of a 50-host fan-out) for what the probe
//! timeouts already guarantee.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use russh::client::{self, AuthResult, Handle, KeyboardInteractiveAuthResponse};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect, Preferred, Sig, cipher, kex};

use super::known_hosts::{self, HostKeyCheck, KnownHosts};
use super::{HostFailure, ScriptOutput};

/// How to authenticate.
#[derive(Clone)]
pub enum SshAuth {
    /// A private key file (OpenSSH format), with its passphrase if it has one.
    KeyFile {
        /// Path to the private key.
        path: PathBuf,
        /// Passphrase, if the key is encrypted.
        passphrase: Option<String>,
    },
    /// The keys offered by the running ssh-agent ($SSH_AUTH_SOCK).
    Agent,
    /// A password (read from a file or the environment, never from argv).
    Password(String),
}

// Written by hand so that `{:?}` of the options (in a log line, a panic, an error context) can
// never print a password or a passphrase.
impl std::fmt::Debug for SshAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SshAuth::KeyFile { path, passphrase } => f
                .debug_struct("KeyFile")
                .field("path", path)
                .field("passphrase", &passphrase.as_ref().map(|_| "<redacted>"))
                .finish(),
            SshAuth::Agent => f.write_str("Agent"),
            SshAuth::Password(_) => f.write_str("Password(<redacted>)"),
        }
    }
}

/// What to do with a host whose key is not in known_hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostKeyPolicy {
    /// Refuse unknown hosts (the default).
    #[default]
    Strict,
    /// Record the key of a host seen for the first time; a changed key still fails.
    AcceptNew,
}

/// Settings shared by every connection of a run.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// Login user when the target does not name one.
    pub user: String,
    /// Credentials.
    pub auth: SshAuth,
    /// The known_hosts file to check (and, with `AcceptNew`, to append to).
    pub known_hosts: PathBuf,
    /// Unknown-host policy.
    pub host_key_policy: HostKeyPolicy,
    /// Limit for TCP connect plus SSH handshake and authentication.
    pub connect_timeout: Duration,
    /// Limit for running the bundled script.
    pub command_timeout: Duration,
    /// The most bytes one host may send back, stdout and stderr together; past it the host
    /// fails (see [`super::DEFAULT_OUTPUT_LIMIT`]).
    pub output_limit: usize,
}

/// One host to visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// The name the host is known by (inventory name); the fallback host name for its report.
    pub name: String,
    /// Address or DNS name to connect to.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Login user, overriding [`SshOptions::user`].
    pub user: Option<String>,
}

/// Key exchange preference: the classic X25519 first (cheapest to compute, supported by every
/// OpenSSH since 6.5), then the post-quantum hybrid and the finite-field groups for servers
/// without it.
const KEX_ORDER: &[kex::Name] = &[
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    kex::MLKEM768X25519_SHA256,
    kex::DH_GEX_SHA256,
    kex::DH_G16_SHA512,
    kex::DH_G14_SHA256,
    kex::EXTENSION_SUPPORT_AS_CLIENT,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
];

/// Cipher preference: AES-GCM first (hardware AES on every x86-64 and ARMv8 server), then
/// ChaCha20-Poly1305 and CTR modes for older servers.
const CIPHER_ORDER: &[cipher::Name] =
    &[cipher::AES_128_GCM, cipher::AES_256_GCM, cipher::CHACHA20_POLY1305, cipher::AES_128_CTR, cipher::AES_256_CTR];

/// Host key algorithms, most preferred first (russh's default order).
const HOST_KEY_ORDER: &[Algorithm] = &[
    Algorithm::Ed25519,
    Algorithm::Ecdsa { curve: EcdsaCurve::NistP256 },
    Algorithm::Ecdsa { curve: EcdsaCurve::NistP384 },
    Algorithm::Ecdsa { curve: EcdsaCurve::NistP521 },
    Algorithm::Rsa { hash: Some(HashAlg::Sha512) },
    Algorithm::Rsa { hash: Some(HashAlg::Sha256) },
];

/// What is prepared once per run and shared by every host.
#[derive(Clone)]
struct Shared {
    options: SshOptions,
    /// The decrypted private key, for [`SshAuth::KeyFile`].
    key: Option<Arc<PrivateKey>>,
    known_hosts: Arc<KnownHosts>,
    /// Agent socket overriding $SSH_AUTH_SOCK (see [`SshClient::with_agent_socket`]).
    agent_socket: Option<PathBuf>,
    /// Write first-seen host names hashed (see [`SshClient::with_hashed_known_hosts`]).
    hash_new_hosts: bool,
}

/// An SSH client for one run (shared by every host of the run). Cloning is cheap: clones share
/// the loaded key and the parsed known_hosts file.
#[derive(Clone)]
pub struct SshClient {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SshClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshClient")
            .field("options", &self.shared.options)
            .field("known_hosts_entries", &self.shared.known_hosts.len())
            .finish_non_exhaustive()
    }
}

/// Why the handshake stopped; carried through russh's handler as its error type.
#[derive(Debug)]
enum HandshakeError {
    /// The host key was refused; the message says why, with fingerprints.
    HostKey(String),
    /// Anything russh reported.
    Ssh(russh::Error),
}

impl From<russh::Error> for HandshakeError {
    fn from(e: russh::Error) -> Self {
        HandshakeError::Ssh(e)
    }
}

/// Checks the server's key for one connection.
struct HostKeyChecker {
    shared: Arc<Shared>,
    host: String,
    port: u16,
}

impl HostKeyChecker {
    fn check_plain(&self, key: &russh::keys::PublicKey) -> HostKeyCheck {
        self.shared.known_hosts.check(&self.host, self.port, key)
    }

    async fn verdict(&self, presented: &PublicKeyOrCertificate) -> Result<bool, HandshakeError> {
        let path = self.shared.known_hosts.path().display().to_string();
        let name = known_hosts::host_key_name(&self.host, self.port);
        let (check, key) = match presented {
            PublicKeyOrCertificate::PublicKey { key, .. } => (self.check_plain(key), key.clone()),
            PublicKeyOrCertificate::Certificate(cert) => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                let bare = presented.public_key();
                match self.shared.known_hosts.check_certificate(&self.host, self.port, cert, now) {
                    HostKeyCheck::Trusted { line } => (HostKeyCheck::Trusted { line }, bare),
                    // A certificate no listed authority vouches for can still carry a key that
                    // is pinned directly, as OpenSSH falls back to.
                    HostKeyCheck::BadCertificate { reason } => match self.check_plain(&bare) {
                        trusted @ HostKeyCheck::Trusted { .. } => (trusted, bare),
                        _ => (HostKeyCheck::BadCertificate { reason }, bare),
                    },
                    other => (other, bare),
                }
            }
        };
        match check {
            HostKeyCheck::Trusted { .. } => Ok(true),
            HostKeyCheck::Unknown => match self.shared.options.host_key_policy {
                HostKeyPolicy::Strict => Err(HandshakeError::HostKey(format!(
                    "{name} is not in {path} (it presented {}); add its key, or use accept-new for a first contact",
                    known_hosts::fingerprint(&key)
                ))),
                HostKeyPolicy::AcceptNew => self.learn(key, &name).await,
            },
            HostKeyCheck::Changed { presented, recorded } => {
                Err(HandshakeError::HostKey(changed_message(&name, &path, &presented, &recorded)))
            }
            HostKeyCheck::Revoked { line, fingerprint } => Err(HandshakeError::HostKey(format!(
                "{name} presented key {fingerprint}, which {path} line {line} marks @revoked"
            ))),
            HostKeyCheck::BadCertificate { reason } => Err(HandshakeError::HostKey(format!(
                "{name} presented a host certificate that is not trusted: {reason}"
            ))),
        }
    }

    async fn learn(&self, key: russh::keys::PublicKey, name: &str) -> Result<bool, HandshakeError> {
        let shared = Arc::clone(&self.shared);
        let (host, port) = (self.host.clone(), self.port);
        let learned_key = key.clone();
        let result = tokio::task::spawn_blocking(move || {
            shared.known_hosts.learn(&host, port, &learned_key, shared.hash_new_hosts)
        })
        .await
        .map_err(|e| HandshakeError::HostKey(format!("recording the key of {name} failed: {e}")))?;
        let path = self.shared.known_hosts.path().display().to_string();
        match result {
            Ok(HostKeyCheck::Unknown) => {
                tracing::warn!(host = %name, fingerprint = %known_hosts::fingerprint(&key), known_hosts = %path,
                    "first contact: recorded the host key (accept-new)");
                Ok(true)
            }
            Ok(HostKeyCheck::Trusted { .. }) => Ok(true),
            Ok(HostKeyCheck::Changed { presented, recorded }) => {
                Err(HandshakeError::HostKey(changed_message(name, &path, &presented, &recorded)))
            }
            Ok(other) => Err(HandshakeError::HostKey(format!("{name}: {other:?}"))),
            Err(e) => Err(HandshakeError::HostKey(format!("cannot record the key of {name}: {e}"))),
        }
    }
}

fn changed_message(name: &str, path: &str, presented: &str, recorded: &[(usize, String)]) -> String {
    let recorded: Vec<String> = recorded.iter().map(|(line, fp)| format!("{fp} ({path} line {line})")).collect();
    format!(
        "HOST KEY CHANGED for {name}: it presented {presented}, known_hosts has {}; someone may be intercepting \
         the connection, or the host was reinstalled (then remove the old line)",
        recorded.join(", ")
    )
}

impl client::Handler for HostKeyChecker {
    type Error = HandshakeError;

    async fn check_server_key(&mut self, server_public_key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        self.verdict(server_public_key).await
    }
}

impl SshClient {
    /// Prepares a client (loads the key, reads known_hosts).
    ///
    /// Fails with [`HostFailure::Auth`] when the key file cannot be read or decrypted, and with
    /// [`HostFailure::HostKey`] when known_hosts exists but cannot be read; both would fail every
    /// host of the run, so they are reported once, before any connection.
    pub fn new(options: SshOptions) -> Result<Self, HostFailure> {
        let key = match &options.auth {
            SshAuth::KeyFile { path, passphrase } => {
                let key = russh::keys::load_secret_key(path, passphrase.as_deref()).map_err(|e| {
                    let why = match e {
                        russh::keys::Error::KeyIsEncrypted => {
                            "the key is encrypted and no passphrase was given".to_owned()
                        }
                        russh::keys::Error::IO(io) => io.to_string(),
                        other if passphrase.is_some() => format!("{other} (wrong passphrase?)"),
                        other => other.to_string(),
                    };
                    HostFailure::Auth(format!("cannot load private key {}: {why}", path.display()))
                })?;
                Some(Arc::new(key))
            }
            SshAuth::Agent | SshAuth::Password(_) => None,
        };
        let known_hosts =
            Arc::new(KnownHosts::load(&options.known_hosts).map_err(|e| HostFailure::HostKey(e.to_string()))?);
        Ok(SshClient {
            shared: Arc::new(Shared { options, key, known_hosts, agent_socket: None, hash_new_hosts: false }),
        })
    }

    /// Uses the ssh-agent listening on `socket` instead of the one named by $SSH_AUTH_SOCK
    /// (for [`SshAuth::Agent`]).
    pub fn with_agent_socket(self, socket: PathBuf) -> Self {
        self.rebuild(|shared| shared.agent_socket = Some(socket))
    }

    /// With `true`, host names of first-seen keys (`AcceptNew`) are written hashed, as OpenSSH's
    /// `HashKnownHosts yes` does, so the file does not list the fleet in clear. Default: plain.
    pub fn with_hashed_known_hosts(self, hashed: bool) -> Self {
        self.rebuild(|shared| shared.hash_new_hosts = hashed)
    }

    fn rebuild(self, change: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.shared);
        change(&mut shared);
        SshClient { shared: Arc::new(shared) }
    }

    /// The options this client was built with.
    pub fn options(&self) -> &SshOptions {
        &self.shared.options
    }

    /// Connects to `target`, runs `script` with `sh -s` once, and returns its output.
    pub async fn run(&self, target: &SshTarget, script: &str) -> Result<ScriptOutput, HostFailure> {
        let options = &self.shared.options;
        let user = target.user.as_deref().unwrap_or(&options.user);
        let started = std::time::Instant::now();
        let connect = tokio::time::timeout(options.connect_timeout, self.connect_and_authenticate(target, user)).await;
        let handle = match connect {
            Ok(result) => result?,
            Err(_) => {
                return Err(HostFailure::Timeout(format!(
                    "connecting to {}:{} (TCP, SSH handshake and authentication) took longer than {:?}",
                    target.host, target.port, options.connect_timeout
                )));
            }
        };
        tracing::debug!(host = %target.name, elapsed_ms = started.elapsed().as_millis() as u64, "authenticated");
        let result = self.exec(&handle, target, script).await;
        // Closing politely lets sshd end the session at once; it must not hold up the result.
        let _ =
            tokio::time::timeout(Duration::from_secs(1), handle.disconnect(Disconnect::ByApplication, "", "")).await;
        drop(handle);
        tracing::debug!(host = %target.name, elapsed_ms = started.elapsed().as_millis() as u64, ok = result.is_ok(), "ssh run done");
        result
    }

    /// The client configuration for one host: host key algorithms already recorded for it go
    /// first (so a server with several keys presents the one we can verify, as OpenSSH orders
    /// them), and certificates are asked for only where an `@cert-authority` line covers it.
    fn config_for(&self, target: &SshTarget) -> client::Config {
        let known = self.shared.known_hosts.known_algorithms(&target.host, target.port);
        let mut keys: Vec<Algorithm> = Vec::with_capacity(HOST_KEY_ORDER.len());
        let recorded = |a: &Algorithm| known.iter().any(|k| k == a || (k.clone().is_rsa() && a.clone().is_rsa()));
        keys.extend(HOST_KEY_ORDER.iter().filter(|a| recorded(a)).cloned());
        keys.extend(HOST_KEY_ORDER.iter().filter(|a| !recorded(a)).cloned());
        let certificates: Vec<Algorithm> = if self.shared.known_hosts.has_cert_authority(&target.host, target.port) {
            HOST_KEY_ORDER.to_vec()
        } else {
            Vec::new()
        };
        client::Config {
            preferred: Preferred {
                kex: Cow::Borrowed(KEX_ORDER),
                key: Cow::Owned(keys),
                host_key_certificates: Cow::Owned(certificates),
                cipher: Cow::Borrowed(CIPHER_ORDER),
                ..Preferred::DEFAULT
            },
            nodelay: true,
            // The connection lives for one exec; no keepalives are needed, but a server that
            // goes silent mid-run must not hold the slot past the command timeout.
            inactivity_timeout: Some(self.shared.options.command_timeout + self.shared.options.connect_timeout),
            ..client::Config::default()
        }
    }

    async fn connect_and_authenticate(
        &self,
        target: &SshTarget,
        user: &str,
    ) -> Result<Handle<HostKeyChecker>, HostFailure> {
        let address = format!("{}:{}", target.host, target.port);
        let addresses: Vec<std::net::SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|e| HostFailure::Unreachable(format!("cannot resolve {}: {e}", target.host)))?
            .collect();
        if addresses.is_empty() {
            return Err(HostFailure::Unreachable(format!("{} resolves to no address", target.host)));
        }
        let mut last_error = None;
        let mut stream = None;
        for socket_address in &addresses {
            match tokio::net::TcpStream::connect(socket_address).await {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last_error = Some(format!("connect to {socket_address}: {e}")),
            }
        }
        let Some(stream) = stream else {
            return Err(HostFailure::Unreachable(last_error.unwrap_or_else(|| format!("cannot connect to {address}"))));
        };
        let _ = stream.set_nodelay(true);
        let checker = HostKeyChecker { shared: Arc::clone(&self.shared), host: target.host.clone(), port: target.port };
        let mut handle = client::connect_stream(Arc::new(self.config_for(target)), stream, checker)
            .await
            .map_err(|e| handshake_failure(&address, e))?;
        self.authenticate(&mut handle, user, &address).await?;
        Ok(handle)
    }

    async fn authenticate(
        &self,
        handle: &mut Handle<HostKeyChecker>,
        user: &str,
        address: &str,
    ) -> Result<(), HostFailure> {
        let lost = |e: russh::Error| session_failure(address, "authentication", e);
        let refused = |what: &str, result: AuthResult| {
            let remaining = match &result {
                AuthResult::Failure { remaining_methods, partial_success: true } => {
                    format!("; the server wants more factors: {remaining_methods:?}")
                }
                AuthResult::Failure { remaining_methods, .. } => format!("; the server accepts: {remaining_methods:?}"),
                AuthResult::Success => String::new(),
            };
            HostFailure::Auth(format!("{address} refused {what} for user {user}{remaining}"))
        };
        match &self.shared.options.auth {
            SshAuth::KeyFile { path, .. } => {
                let Some(key) = &self.shared.key else {
                    return Err(HostFailure::Auth(format!("private key {} was not loaded", path.display())));
                };
                // RSA keys sign with the best hash the server announces (rsa-sha2-512/256);
                // asking costs a round trip, so only RSA keys ask.
                let hash = if key.algorithm().is_rsa() {
                    handle.best_supported_rsa_hash().await.map_err(lost)?.flatten()
                } else {
                    None
                };
                let result = handle
                    .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::clone(key), hash))
                    .await
                    .map_err(lost)?;
                if result.success() {
                    return Ok(());
                }
                let fingerprint = known_hosts::fingerprint(key.public_key());
                Err(refused(&format!("key {} ({fingerprint})", path.display()), result))
            }
            SshAuth::Agent => self.authenticate_with_agent(handle, user, address).await,
            SshAuth::Password(password) => {
                let result = handle.authenticate_password(user, password.clone()).await.map_err(lost)?;
                if result.success() {
                    return Ok(());
                }
                // Many servers take passwords only through keyboard-interactive (PAM); answer
                // its password prompts with the same password, and nothing else.
                if let AuthResult::Failure { remaining_methods, .. } = &result
                    && remaining_methods.contains(&russh::MethodKind::KeyboardInteractive)
                {
                    let mut reply =
                        handle.authenticate_keyboard_interactive_start(user, None::<String>).await.map_err(lost)?;
                    for _round in 0..4 {
                        match reply {
                            KeyboardInteractiveAuthResponse::Success => return Ok(()),
                            KeyboardInteractiveAuthResponse::Failure { remaining_methods, partial_success } => {
                                return Err(refused(
                                    "the password (keyboard-interactive)",
                                    AuthResult::Failure { remaining_methods, partial_success },
                                ));
                            }
                            KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                                let answers = prompts
                                    .iter()
                                    .map(|p| if p.echo { String::new() } else { password.clone() })
                                    .collect();
                                reply =
                                    handle.authenticate_keyboard_interactive_respond(answers).await.map_err(lost)?;
                            }
                        }
                    }
                    return Err(HostFailure::Auth(format!(
                        "{address}: keyboard-interactive asked more questions than a password answers"
                    )));
                }
                Err(refused("the password", result))
            }
        }
    }

    async fn authenticate_with_agent(
        &self,
        handle: &mut Handle<HostKeyChecker>,
        user: &str,
        address: &str,
    ) -> Result<(), HostFailure> {
        let socket = match &self.shared.agent_socket {
            Some(socket) => socket.clone(),
            None => match std::env::var_os("SSH_AUTH_SOCK") {
                Some(socket) if !socket.is_empty() => PathBuf::from(socket),
                _ => return Err(HostFailure::Auth("no ssh-agent: SSH_AUTH_SOCK is not set".to_owned())),
            },
        };
        let mut agent = AgentClient::connect_uds(&socket)
            .await
            .map_err(|e| HostFailure::Auth(format!("cannot reach ssh-agent at {}: {e}", socket.display())))?;
        let identities = agent
            .request_identities()
            .await
            .map_err(|e| HostFailure::Auth(format!("ssh-agent at {}: {e}", socket.display())))?;
        let keys: Vec<russh::keys::PublicKey> = identities
            .into_iter()
            .filter_map(|identity| match identity {
                AgentIdentity::PublicKey { key, .. } => Some(key),
                // Certificates would need the server's user CA; plain keys cover the agent use.
                AgentIdentity::Certificate { .. } => None,
            })
            .collect();
        if keys.is_empty() {
            return Err(HostFailure::Auth(format!("ssh-agent at {} holds no keys", socket.display())));
        }
        let mut tried = Vec::new();
        for key in keys {
            let hash = if key.algorithm().is_rsa() {
                handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(|e| session_failure(address, "authentication", e))?
                    .flatten()
            } else {
                None
            };
            let fingerprint = known_hosts::fingerprint(&key);
            match handle.authenticate_publickey_with(user, key, hash, &mut agent).await {
                Ok(result) if result.success() => return Ok(()),
                Ok(_) => tried.push(fingerprint),
                Err(e) => tried.push(format!("{fingerprint} (agent could not sign: {e})")),
            }
        }
        Err(HostFailure::Auth(format!("{address} refused every ssh-agent key for user {user}: {}", tried.join(", "))))
    }

    async fn exec(
        &self,
        handle: &Handle<HostKeyChecker>,
        target: &SshTarget,
        script: &str,
    ) -> Result<ScriptOutput, HostFailure> {
        let address = format!("{}:{}", target.host, target.port);
        let limit = self.shared.options.command_timeout;
        let output_limit = self.shared.options.output_limit;
        let channel = tokio::time::timeout(limit, handle.channel_open_session())
            .await
            .map_err(|_| HostFailure::Timeout(format!("{address}: opening a session took longer than {limit:?}")))?
            .map_err(|e| session_failure(&address, "opening a session", e))?;
        let (mut reader, writer) = channel.split();
        let work = async {
            writer.exec(true, "sh -s").await.map_err(|e| session_failure(&address, "exec", e))?;
            let feed = async {
                writer.data(script.as_bytes()).await?;
                writer.eof().await
            };
            let collect = async {
                let mut output = ScriptOutput { stdout: Vec::new(), stderr: Vec::new(), status: None };
                let mut exec_refused = false;
                while let Some(message) = reader.wait().await {
                    match message {
                        ChannelMsg::Data { data } => {
                            check_output_limit(&output, data.len(), output_limit, &address)?;
                            output.stdout.extend_from_slice(&data);
                        }
                        ChannelMsg::ExtendedData { data, ext: 1 } => {
                            check_output_limit(&output, data.len(), output_limit, &address)?;
                            output.stderr.extend_from_slice(&data);
                        }
                        ChannelMsg::ExitStatus { exit_status } => {
                            output.status = Some(i32::try_from(exit_status).unwrap_or(i32::MAX))
                        }
                        ChannelMsg::ExitSignal { signal_name, .. } => {
                            tracing::debug!(host = %target.name, signal = ?signal_name, "remote sh killed by a signal");
                        }
                        ChannelMsg::Failure => exec_refused = true,
                        ChannelMsg::Close => break,
                        _ => {}
                    }
                }
                if exec_refused && output.stdout.is_empty() {
                    return Err(HostFailure::Other(format!("{address} refused to run `sh -s`")));
                }
                Ok(output)
            };
            let (fed, collected) = tokio::join!(feed, collect);
            let output = collected?;
            // A failed write only matters if nothing came back: sh may legitimately exit
            // before reading all of stdin.
            if let Err(e) = fed
                && output.stdout.is_empty()
            {
                return Err(session_failure(&address, "sending the script", e));
            }
            Ok(output)
        };
        let stopped = match tokio::time::timeout(limit, work).await {
            Ok(Err(failure @ HostFailure::OutputLimit { .. })) => failure,
            Ok(result) => return result,
            Err(_) => {
                HostFailure::Timeout(format!("{address}: the probe script ran longer than {limit:?} and was killed"))
            }
        };
        // The remote script is still running: ask sshd to kill the process group (see the
        // module doc for when it does), close the channel and wait briefly for the close to be
        // echoed, so both requests are on the wire before the connection goes. Whatever else
        // the host sends meanwhile is dropped unread.
        let _ = tokio::time::timeout(Duration::from_millis(500), writer.signal(Sig::KILL)).await;
        let _ = tokio::time::timeout(Duration::from_millis(500), writer.close()).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(message) = reader.wait().await {
                if matches!(message, ChannelMsg::Close) {
                    break;
                }
            }
        })
        .await;
        Err(stopped)
    }
}

/// Fails when `more` bytes would take the host's stdout and stderr together past `limit`: a
/// bundled script prints a few hundred KiB at most, and a host that streams more is broken or
/// hostile and must not exhaust the collector's memory (64 hosts are read at once).
fn check_output_limit(output: &ScriptOutput, more: usize, limit: usize, address: &str) -> Result<(), HostFailure> {
    if output.stdout.len() + output.stderr.len() + more > limit {
        return Err(HostFailure::OutputLimit { host: address.to_owned(), limit });
    }
    Ok(())
}

/// Maps an error of the handshake (before authentication) to a failure.
fn handshake_failure(address: &str, error: HandshakeError) -> HostFailure {
    match error {
        HandshakeError::HostKey(message) => HostFailure::HostKey(message),
        HandshakeError::Ssh(russh::Error::UnknownKey) => HostFailure::HostKey(format!("{address}: host key refused")),
        HandshakeError::Ssh(e) => session_failure(address, "SSH handshake", e),
    }
}

/// Maps a russh error at `stage` to a failure: a broken or closed connection is Unreachable,
/// a protocol disagreement is Other.
fn session_failure(address: &str, stage: &str, error: russh::Error) -> HostFailure {
    use russh::Error as E;
    match error {
        E::IO(io) => HostFailure::Unreachable(format!("{address}: connection lost during {stage}: {io}")),
        E::Disconnect | E::HUP | E::SendError | E::RecvError => {
            HostFailure::Unreachable(format!("{address}: the server closed the connection during {stage}"))
        }
        E::ConnectionTimeout | E::InactivityTimeout | E::KeepaliveTimeout | E::Elapsed(_) => {
            HostFailure::Timeout(format!("{address}: {stage} timed out ({error})"))
        }
        E::NotAuthenticated | E::NoAuthMethod | E::UnsupportedAuthMethod => {
            HostFailure::Auth(format!("{address}: {stage}: {error}"))
        }
        E::UnknownKey | E::WrongServerSig | E::KeyChanged { .. } => {
            HostFailure::HostKey(format!("{address}: {stage}: {error}"))
        }
        E::Version => HostFailure::Other(format!("{address} does not speak SSH-2 (bad version banner)")),
        other => HostFailure::Other(format!("{address}: {stage} failed: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(auth: SshAuth, known_hosts: PathBuf) -> SshOptions {
        SshOptions {
            user: "root".into(),
            auth,
            known_hosts,
            host_key_policy: HostKeyPolicy::Strict,
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(5),
            output_limit: crate::transport::DEFAULT_OUTPUT_LIMIT,
        }
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let auth = SshAuth::Password("hunter2-secret".into());
        let text = format!("{:?}", options(auth, "/nonexistent/kh".into()));
        assert!(!text.contains("hunter2") && text.contains("<redacted>"), "{text}");
        let auth = SshAuth::KeyFile { path: "/k".into(), passphrase: Some("pass-secret".into()) };
        let text = format!("{auth:?}");
        assert!(!text.contains("pass-secret") && text.contains("/k"), "{text}");
        let client = SshClient::new(options(SshAuth::Password("hunter2-secret".into()), "/nonexistent/kh".into()))
            .expect("missing known_hosts is empty");
        assert!(!format!("{client:?}").contains("hunter2"));
    }

    #[test]
    fn unreadable_or_encrypted_keys_fail_before_any_host() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = SshClient::new(options(
            SshAuth::KeyFile { path: dir.path().join("nope"), passphrase: None },
            dir.path().join("kh"),
        ));
        assert!(matches!(missing, Err(HostFailure::Auth(ref m)) if m.contains("nope")), "{missing:?}");
        let key = dir.path().join("enc");
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "right-passphrase", "-f"])
            .arg(&key)
            .status();
        if !status.is_ok_and(|s| s.success()) {
            // ssh-keygen comes with openssh-client; the integration tests install it.
            panic!("ssh-keygen is needed for this test (apt-get install openssh-client)");
        }
        let no_pass =
            SshClient::new(options(SshAuth::KeyFile { path: key.clone(), passphrase: None }, dir.path().join("kh")));
        assert!(matches!(no_pass, Err(HostFailure::Auth(ref m)) if m.contains("encrypted")), "{no_pass:?}");
        let wrong = SshClient::new(options(
            SshAuth::KeyFile { path: key.clone(), passphrase: Some("wrong".into()) },
            dir.path().join("kh"),
        ));
        assert!(matches!(wrong, Err(HostFailure::Auth(_))), "{wrong:?}");
        let right = SshClient::new(options(
            SshAuth::KeyFile { path: key, passphrase: Some("right-passphrase".into()) },
            dir.path().join("kh"),
        ));
        assert!(right.is_ok(), "{right:?}");
    }

    #[tokio::test]
    async fn nothing_listening_is_unreachable() {
        // Bind then drop a listener to get a port that is closed right now.
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port");
        let client = SshClient::new(options(SshAuth::Password("x".into()), "/nonexistent/kh".into())).expect("client");
        let target = SshTarget { name: "closed".into(), host: "127.0.0.1".into(), port, user: None };
        let err = client.run(&target, "true").await.expect_err("nothing listens");
        assert!(matches!(err, HostFailure::Unreachable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_silent_server_is_a_connect_timeout() {
        // Accepts TCP but never says a word: the handshake must not wait forever.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accept");
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(socket);
        });
        let mut opts = options(SshAuth::Password("x".into()), "/nonexistent/kh".into());
        opts.connect_timeout = Duration::from_millis(300);
        let client = SshClient::new(opts).expect("client");
        let target = SshTarget { name: "silent".into(), host: "127.0.0.1".into(), port, user: None };
        let started = std::time::Instant::now();
        let err = client.run(&target, "true").await.expect_err("times out");
        assert!(matches!(err, HostFailure::Timeout(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        server.abort();
    }

    #[tokio::test]
    async fn a_server_that_is_not_ssh_is_not_a_success() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let (mut socket, _) = listener.accept().await.expect("accept");
            let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        });
        let client = SshClient::new(options(SshAuth::Password("x".into()), "/nonexistent/kh".into())).expect("client");
        let target = SshTarget { name: "http".into(), host: "127.0.0.1".into(), port, user: None };
        let err = client.run(&target, "true").await.expect_err("not ssh");
        assert!(matches!(err, HostFailure::Other(_) | HostFailure::Unreachable(_)), "{err:?}");
        server.abort();
    }
}

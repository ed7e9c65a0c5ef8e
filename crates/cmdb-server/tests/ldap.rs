//! Directory (LDAP) login against a real OpenLDAP `slapd` that each test starts with its own small
//! directory: StartTLS with a certificate from a test CA, binds refused without TLS
//! (`security ssf=1`), people in an admin, a viewer and an unmapped group, and the root DN on a
//! Unix socket (ldapi) for changing the directory mid-test.

mod common;
mod web_support;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cmdb_server::auth::Role;
use cmdb_server::config::LdapConfig;
use cmdb_server::directory::{Directory, DirectoryError, Verdict};
use cmdb_server::web::users;
use common::{Backend, TestDb, test_config};
use ldap3::{LdapConnAsync, Mod};
use sqlx::Row;
use web_support::{PASSWORD, WebServer};

const SUFFIX: &str = "dc=example,dc=org";
const ROOT_DN: &str = "cn=root,dc=example,dc=org";
const ROOT_PASSWORD: &str = "root-secret-for-tests";
const SERVICE_DN: &str = "cn=cmdb,ou=services,dc=example,dc=org";
const SERVICE_PASSWORD: &str = "service-secret-for-tests";
const ADMINS: &str = "cn=admins,ou=groups,dc=example,dc=org";
const VIEWERS: &str = "cn=viewers,ou=groups,dc=example,dc=org";

fn person(uid: &str) -> String {
    format!("uid={uid},ou=people,{SUFFIX}")
}

/// Each person's directory password.
fn password_of(uid: &str) -> String {
    format!("{uid} directory password")
}

/// Installs Debian's slapd when it is missing (CI's script installs it first; this keeps the test
/// self-contained). One test at a time runs apt-get.
fn ensure_slapd() {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if Path::new("/usr/sbin/slapd").exists() && Path::new("/usr/sbin/slapadd").exists() {
        return;
    }
    for args in [&["update", "-qq"][..], &["install", "-y", "-qq", "--no-install-recommends", "slapd", "ldap-utils"]] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .expect("apt-get");
        assert!(status.success(), "apt-get {args:?} failed");
    }
    assert!(Path::new("/usr/sbin/slapd").exists(), "slapd is not installed");
}

fn run(command: &mut Command) {
    let output = command.output().expect("run a command");
    assert!(output.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// A CA and a certificate for 127.0.0.1 signed by it (the directory's), made with openssl.
fn certificates(dir: &Path) {
    let p = |name: &str| dir.join(name);
    run(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=cmdb test CA", "-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout"])
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca.pem")));
    run(Command::new("openssl")
        .args(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=127.0.0.1"])
        .arg("-keyout")
        .arg(p("server.key"))
        .arg("-out")
        .arg(p("server.csr")));
    std::fs::write(
        p("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write extensions");
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial", "-in"])
        .arg(p("server.csr"))
        .arg("-CA")
        .arg(p("ca.pem"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("server.pem"))
        .arg("-extfile")
        .arg(p("server.ext")));
}

/// The directory: a service account, five people and three groups. `editor` also names a local
/// account of the test server (with another password) and is a directory admin.
fn directory_ldif() -> String {
    let mut ldif = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
         dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n\n\
         dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: cmdb\n\
         userPassword: {SERVICE_PASSWORD}\n\n\
         dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n"
    );
    for uid in ["alice", "bob", "carol", "dave", "editor"] {
        ldif.push_str(&format!(
            "dn: {}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\nuserPassword: {}\n",
            person(uid),
            password_of(uid)
        ));
        // A DN-valued attribute of the entry that names a group, for `member_attribute` (as
        // `memberOf` would, without the overlay that maintains it).
        if uid == "alice" {
            ldif.push_str(&format!("seeAlso: {ADMINS}\n"));
        }
        ldif.push('\n');
    }
    for (group, members) in [
        (ADMINS, &["alice", "editor"][..]),
        (VIEWERS, &["alice", "bob", "dave"][..]),
        ("cn=staff,ou=groups,dc=example,dc=org", &["carol"][..]),
    ] {
        let cn = group.split(',').next().unwrap_or("").trim_start_matches("cn=");
        ldif.push_str(&format!("dn: {group}\nobjectClass: groupOfNames\ncn: {cn}\n"));
        for member in members {
            ldif.push_str(&format!("member: {}\n", person(member)));
        }
        ldif.push('\n');
    }
    ldif
}

/// A running slapd, killed on drop.
struct Slapd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    ldaps_port: u16,
}

impl Slapd {
    fn start() -> Slapd {
        ensure_slapd();
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        certificates(d);
        std::fs::create_dir(d.join("data")).expect("data dir");
        let conf = format!(
            "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\n\
             pidfile {d}/slapd.pid\nTLSCACertificateFile {d}/ca.pem\nTLSCertificateFile {d}/server.pem\n\
             TLSCertificateKeyFile {d}/server.key\n\
             # Nothing but TLS (or the local socket) may bind or search: proves cmdb used StartTLS.\n\
             security ssf=1\n\
             database mdb\nmaxsize 10485760\nsuffix \"{SUFFIX}\"\nrootdn \"{ROOT_DN}\"\nrootpw {ROOT_PASSWORD}\n\
             directory {d}/data\n\
             access to attrs=userPassword by self =xw by anonymous auth by * none\n\
             access to * by users read by * none\n",
            d = d.display()
        );
        std::fs::write(d.join("slapd.conf"), conf).expect("write slapd.conf");
        std::fs::write(d.join("data.ldif"), directory_ldif()).expect("write ldif");
        run(Command::new("/usr/sbin/slapadd").arg("-f").arg(d.join("slapd.conf")).arg("-l").arg(d.join("data.ldif")));
        let free = || std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let (port, ldaps_port) = (free(), free());
        let log = std::fs::File::create(d.join("slapd.log")).expect("log file");
        // `-d 0`: stay in the foreground (so the child is slapd itself) and log nothing.
        let child = Command::new("/usr/sbin/slapd")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-h")
            .arg(format!("ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{ldaps_port}/ {}", Self::ldapi_url_for(d)))
            .args(["-d", "0"])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start slapd");
        let mut slapd = Slapd { child: Some(child), dir, port, ldaps_port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = slapd.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "slapd did not start ({exited:?}): {}",
                std::fs::read_to_string(slapd.dir.path().join("slapd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        slapd
    }

    fn ldapi_url_for(dir: &Path) -> String {
        let path = dir.join("ldapi").display().to_string();
        format!("ldapi://{}", path.replace('/', "%2F"))
    }

    fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// The `[ldap]` section for this directory (the service password in a 0600 file).
    fn config(&self) -> LdapConfig {
        use std::os::unix::fs::PermissionsExt;
        let password_file = self.dir.path().join("bind-password");
        std::fs::write(&password_file, format!("{SERVICE_PASSWORD}\n")).expect("write password file");
        std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        LdapConfig {
            url: self.url(),
            bind_dn: SERVICE_DN.to_owned(),
            bind_password_file: password_file,
            user_base: format!("ou=people,{SUFFIX}"),
            user_filter: "(&(objectClass=inetOrgPerson)(uid={username}))".to_owned(),
            group_base: Some(format!("ou=groups,{SUFFIX}")),
            group_filter: "(member={dn})".to_owned(),
            member_attribute: None,
            groups: BTreeMap::from([(ADMINS.to_owned(), Role::Admin), (VIEWERS.to_owned(), Role::Viewer)]),
            ca_file: Some(self.dir.path().join("ca.pem")),
            timeout_secs: 3,
        }
    }

    /// Changes the directory as its root DN, over the local socket.
    async fn modify(&self, dn: &str, mods: Vec<Mod<&str>>) {
        let (conn, mut ldap) = LdapConnAsync::new(&Self::ldapi_url_for(self.dir.path())).await.expect("ldapi");
        tokio::spawn(async move {
            let _ = conn.drive().await;
        });
        ldap.simple_bind(ROOT_DN, ROOT_PASSWORD).await.expect("bind").success().expect("root bind");
        ldap.modify(dn, mods).await.expect("modify").success().expect("modify accepted");
        let _ = ldap.unbind().await;
    }

    /// Takes `uid` out of `group`.
    async fn remove_member(&self, group: &str, uid: &str) {
        let member = person(uid);
        self.modify(group, vec![Mod::Delete("member", HashSet::from([member.as_str()]))]).await;
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn start(db: &TestDb, slapd: &Slapd) -> WebServer {
    let config = cmdb_server::config::ServerConfig { ldap: Some(slapd.config()), ..test_config(db) };
    config.validate().expect("valid configuration");
    WebServer::start_with(db, config).await
}

async fn sessions_of(server: &WebServer, name: &str) -> i64 {
    sqlx::query("SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.name = $1")
        .bind(name.to_owned())
        .fetch_one(server.db.reader())
        .await
        .expect("count sessions")
        .try_get(0)
        .expect("count")
}

async fn audit_details(server: &WebServer, action: &str) -> Vec<String> {
    sqlx::query("SELECT actor || ': ' || detail FROM audit_log WHERE action = $1 ORDER BY id")
        .bind(action.to_owned())
        .fetch_all(server.db.reader())
        .await
        .expect("audit")
        .iter()
        .map(|row| row.try_get(0).expect("text"))
        .collect()
}

async fn groups_give_roles_at_each_login(backend: Backend) {
    let slapd = Slapd::start();
    let db = TestDb::new(backend).await;
    let server = start(&db, &slapd).await;

    // Right password: an account marked as a directory account, with its groups' highest role.
    let mut alice = server.client();
    let answer = alice.login("alice", &password_of("alice")).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let account = users::find(&server.db, "alice").await.expect("find").expect("alice has an account now");
    assert!(account.directory);
    assert_eq!(account.role, Role::Admin, "admins and viewers: the higher role");
    assert_eq!(alice.get("/admin/users").await.status, 200);
    assert_eq!(audit_details(&server, "user.directory_created").await, vec!["alice: user alice"]);
    assert_eq!(audit_details(&server, "login").await, vec!["alice: role admin (directory)"]);

    let mut bob = server.client();
    assert_eq!(bob.login("bob", &password_of("bob")).await.status, 303);
    assert_eq!(users::find(&server.db, "bob").await.expect("find").expect("bob").role, Role::Viewer);
    assert_eq!(bob.get("/admin/users").await.status, 403);
    assert_eq!(bob.get("/").await.status, 200);

    // Out of the admin group: no admin at the next login (and the session that was admin reads
    // the stored role at each request, so it is a viewer's from then on too).
    slapd.remove_member(ADMINS, "alice").await;
    let mut again = server.client();
    assert_eq!(again.login("alice", &password_of("alice")).await.status, 303);
    let account = users::find(&server.db, "alice").await.expect("find").expect("alice");
    assert_eq!(account.role, Role::Viewer);
    assert_eq!(again.get("/admin/users").await.status, 403);
    assert_eq!(alice.get("/admin/users").await.status, 403);
    let created = audit_details(&server, "user.directory_created").await;
    assert_eq!(created, vec!["alice: user alice", "bob: user bob"], "each account created once");

    // A directory account's password is the directory's: no local change or reset.
    let page = again.get("/account").await;
    assert!(page.body.contains("change your password in the directory"), "{}", page.body);
    assert!(!page.body.contains("id=\"password-form\""), "no password form");
    let csrf = web_support::hidden_value(&page.body, "csrf").expect("csrf");
    let form = [
        ("csrf", csrf.as_str()),
        ("current", "x"),
        ("new", "a new local password"),
        ("confirm", "a new local password"),
    ];
    let refused = again.post_form("/account", &form).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body.contains("kept in the directory"), "{}", refused.body);
    let err = users::set_password(&server.db, account.id, "a new local password", false).await;
    assert!(matches!(err, Err(users::UserError::Invalid(_))), "{err:?}");
}

async fn wrong_passwords_are_refused_and_throttled(backend: Backend) {
    let slapd = Slapd::start();
    let db = TestDb::new(backend).await;
    let server = start(&db, &slapd).await;
    let mut browser = server.client();
    // An empty password would be an "unauthenticated bind" (RFC 4513), which slapd accepts: it
    // must never reach the directory as a success.
    let answer = browser.login("bob", "").await;
    assert_eq!(answer.status, 401, "{}", answer.body);
    // Five failures are free; the fifth blocks the (user, address) pair, as for local accounts.
    for attempt in 2..=5 {
        let answer = browser.login("bob", "not bob's password").await;
        assert_eq!(answer.status, 401, "attempt {attempt}: {}", answer.body);
        assert!(answer.body.contains("Wrong user name or password"), "{}", answer.body);
        if attempt == 5 {
            assert!(answer.body.contains("blocked for 1 seconds"), "{}", answer.body);
        }
    }
    let blocked = browser.login("bob", &password_of("bob")).await;
    assert_eq!(blocked.status, 429, "even the right password waits: {}", blocked.body);
    assert!(users::find(&server.db, "bob").await.expect("find").is_none(), "no account from failed logins");
    let failed = audit_details(&server, "login_failed").await;
    assert_eq!(failed, vec!["-: directory: unknown name or wrong password"], "one row, repeated");
    // Unknown directory names are refused the same way.
    assert_eq!(server.client().login("nobody", "whatever password").await.status, 401);
    // Once the block has passed the right password works and clears the pair.
    sqlx::query("UPDATE login_throttle SET blocked_until = 0").execute(server.db.writer()).await.expect("unblock");
    assert_eq!(browser.login("bob", &password_of("bob")).await.status, 303);
}

async fn unmapped_people_are_refused_and_their_sessions_end(backend: Backend) {
    let slapd = Slapd::start();
    let db = TestDb::new(backend).await;
    let server = start(&db, &slapd).await;
    // Carol's password is right but her only group maps to no role.
    let carol = server.client().login("carol", &password_of("carol")).await;
    assert_eq!(carol.status, 403, "{}", carol.body);
    assert!(carol.body.contains("no group that grants access"), "{}", carol.body);
    assert!(users::find(&server.db, "carol").await.expect("find").is_none(), "no account for her");

    // Dave logs in twice (two sessions), then leaves the viewers: his next login is refused and
    // both sessions end.
    let mut first = server.client();
    assert_eq!(first.login("dave", &password_of("dave")).await.status, 303);
    let mut second = server.client();
    assert_eq!(second.login("dave", &password_of("dave")).await.status, 303);
    assert_eq!(sessions_of(&server, "dave").await, 2);
    slapd.remove_member(VIEWERS, "dave").await;
    let refused = server.client().login("dave", &password_of("dave")).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(sessions_of(&server, "dave").await, 0);
    assert_eq!(first.get("/").await.status, 303, "sent to the login page");
    assert_eq!(second.get("/").await.status, 303);
    assert!(
        audit_details(&server, "login_failed").await.contains(&"dave: directory user in no mapped group".to_owned())
    );
}

async fn local_names_never_reach_the_directory_and_filters_are_escaped(backend: Backend) {
    let slapd = Slapd::start();
    let db = TestDb::new(backend).await;
    let server = start(&db, &slapd).await;
    // `editor` is a local account and also a directory admin: the directory password does not
    // work, the local one does, and the role stays the local one.
    assert_eq!(server.client().login("editor", &password_of("editor")).await.status, 401);
    let mut editor = server.client();
    assert_eq!(editor.login("editor", PASSWORD).await.status, 303);
    let account = users::find(&server.db, "editor").await.expect("find").expect("editor");
    assert!(!account.directory);
    assert_eq!(account.role, Role::Editor);
    assert_eq!(editor.get("/admin/users").await.status, 403);

    // Filter injection: over HTTP such names are not even valid user names...
    for name in ["*)(uid=*", "*", "alice)(|(uid=*"] {
        let answer = server.client().login(name, &password_of("alice")).await;
        assert_eq!(answer.status, 401, "{name}: {}", answer.body);
    }
    // ...and the directory client, asked directly, escapes them: `*)(uid=*` would otherwise match
    // every person, and `*` anyone's entry.
    let directory = Directory::new(&slapd.config()).expect("directory");
    for name in ["*)(uid=*", "*", "ali*", "alice)(uid=bob"] {
        let verdict = directory.authenticate(name, &password_of("alice")).await.expect("the directory answers");
        assert_eq!(verdict, Verdict::Refused, "{name}");
    }
    let verdict = directory.authenticate("alice", &password_of("alice")).await.expect("answers");
    assert_eq!(verdict, Verdict::Accepted { dn: person("alice"), role: Some(Role::Admin) });
    assert_eq!(directory.authenticate("alice", "").await.expect("answers"), Verdict::Refused);

    // The directory's certificate is checked: trusting only the system's roots (not the test CA),
    // the directory is unreachable; nothing falls back to a connection without TLS.
    let untrusted = Directory::new(&LdapConfig { ca_file: None, ..slapd.config() }).expect("directory");
    let err = untrusted.authenticate("alice", &password_of("alice")).await.expect_err("untrusted certificate");
    assert!(matches!(err, DirectoryError::Unreachable(_)) && err.to_string().contains("certificate"), "{err}");
}

async fn local_logins_work_while_the_directory_is_down(backend: Backend) {
    let mut slapd = Slapd::start();
    let db = TestDb::new(backend).await;
    let server = start(&db, &slapd).await;
    let mut alice = server.client();
    assert_eq!(alice.login("alice", &password_of("alice")).await.status, 303);
    let form = server.client().get("/login").await;
    assert!(!form.body.contains("unreachable"), "{}", form.body);

    slapd.stop();
    // A directory name: a clear answer, not an error page, and no failure counted against them.
    let answer = server.client().login("alice", &password_of("alice")).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(answer.body.contains("directory (LDAP) is unreachable"), "{}", answer.body);
    let counted: i64 =
        sqlx::query("SELECT COALESCE(MAX(failures), 0) FROM login_throttle WHERE scope LIKE 'pair:alice|%'")
            .fetch_one(server.db.reader())
            .await
            .expect("throttle")
            .try_get(0)
            .expect("int");
    assert_eq!(counted, 0);
    // Local accounts, the administrator first, log in as ever.
    let mut admin = server.client();
    let answer = admin.login("admin", PASSWORD).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(admin.get("/admin/users").await.status, 200);
    // The login page says the directory is down.
    let form = server.client().get("/login").await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("directory (LDAP) is unreachable"), "{}", form.body);

    // A server started while the directory is down finds out by itself (a background probe) and
    // says so on the login page, without anyone trying a directory login first.
    let other = start(&db, &slapd).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let form = other.client().get("/login").await;
        assert_eq!(form.status, 200);
        if form.body.contains("directory (LDAP) is unreachable") {
            break;
        }
        assert!(Instant::now() < deadline, "the login page never said the directory is down");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(other.client().login("admin", PASSWORD).await.status, 303);
}

/// `ldaps://` (TLS from the first byte) and groups read from an attribute of the person's entry.
async fn ldaps_and_groups_from_an_attribute() {
    let slapd = Slapd::start();
    let config = LdapConfig {
        url: format!("ldaps://127.0.0.1:{}", slapd.ldaps_port),
        group_base: None,
        member_attribute: Some("seeAlso".to_owned()),
        ..slapd.config()
    };
    let directory = Directory::new(&config).expect("directory");
    let verdict = directory.authenticate("alice", &password_of("alice")).await.expect("answers over ldaps");
    assert_eq!(verdict, Verdict::Accepted { dn: person("alice"), role: Some(Role::Admin) });
    // Bob is in the viewers group, but his entry names no group: here that is no mapped group.
    let verdict = directory.authenticate("bob", &password_of("bob")).await.expect("answers");
    assert_eq!(verdict, Verdict::Accepted { dn: person("bob"), role: None });
    assert_eq!(directory.authenticate("bob", "wrong").await.expect("answers"), Verdict::Refused);
}

on_both_backends!(groups_give_roles_at_each_login);

mod sqlite_only {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_passwords() {
        wrong_passwords_are_refused_and_throttled(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unmapped_people() {
        unmapped_people_are_refused_and_their_sessions_end(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_names_and_injection() {
        local_names_never_reach_the_directory_and_filters_are_escaped(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ldaps_and_member_attribute() {
        ldaps_and_groups_from_an_attribute().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn directory_down() {
        local_logins_work_while_the_directory_is_down(Backend::Sqlite).await;
    }
}

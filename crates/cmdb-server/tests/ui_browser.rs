//! End to end in a real headless Chromium (Debian's chromium and chromedriver, driven over
//! WebDriver): log in, search, open an asset, edit a business field and see it in the timeline,
//! export, pick an as-of date, log out; a viewer cannot edit; form posts without the CSRF token are
//! refused; hostile host names run no script. Takes the screenshots of docs/screenshots/.
//!
//! Chromium and chromedriver are installed with apt-get when missing (CI runs as root). The
//! screenshots are written under the target directory; with `CMDB_UPDATE_SCREENSHOTS=1` they also
//! replace `docs/screenshots/*.png`.

mod common;
mod web_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, TestDb, report};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use sqlx::Row;
use web_support::{PASSWORD, WebServer};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Installs Debian's chromium and chromium-driver when they are missing (once: the tests of this
/// binary run in parallel, and a second apt-get would fail on the first one's lock).
fn ensure_chromium() {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _installing = INSTALL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return;
    }
    let install = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver";
    let status = Command::new("sh").args(["-c", install]).status().expect("run apt-get");
    assert!(
        status.success(),
        "installing chromium and chromium-driver failed (the test needs root and Debian's archive)"
    );
    assert!(
        Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists(),
        "chromium installed but not at {CHROMIUM}"
    );
}

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let child = Command::new(CHROMEDRIVER)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".to_owned()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen within 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Driver { child, url }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebDriver session of Debian's Chromium, headless, with `args` beside the common ones and
/// `options` (prefs, mobile emulation) merged into its `goog:chromeOptions`.
async fn chromium(driver: &Driver, profile: &Path, args: &[&str], options: Value) -> Client {
    let mut chrome = json!({
        "binary": CHROMIUM,
        "args": [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
            "--hide-scrollbars", "--lang=en-US",
            format!("--user-data-dir={}", profile.display()),
        ],
    });
    if let Some(list) = chrome["args"].as_array_mut() {
        list.extend(args.iter().map(|a| json!(a)));
    }
    if let (Some(target), Some(extra)) = (chrome.as_object_mut(), options.as_object()) {
        target.extend(extra.clone());
    }
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert("goog:chromeOptions".into(), chrome);
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector).capabilities(caps).connect(&driver.url).await.expect("WebDriver session")
}

async fn browser(driver: &Driver, profile: &Path, downloads: &Path) -> Client {
    let prefs = json!({"prefs": {
        "download.default_directory": downloads.display().to_string(),
        "download.prompt_for_download": false,
    }});
    chromium(driver, profile, &["--window-size=1440,1000"], prefs).await
}

/// A fleet that looks like a small data centre, with a history spread over the last weeks.
async fn seed(server: &WebServer) -> Vec<(i64, String)> {
    let makers = [
        ("Dell Inc.", "PowerEdge R640"),
        ("HPE", "ProLiant DL380 Gen10"),
        ("Lenovo", "ThinkSystem SR650"),
        ("Inspur", "NF5280M5"),
    ];
    let oses = [("Debian GNU/Linux", "12"), ("Rocky Linux", "9.4"), ("Ubuntu", "22.04")];
    let roles = ["web", "db", "cache", "search", "batch"];
    let mut assets = Vec::new();
    let count = 24;
    for index in 0..count {
        let hostname = format!("{}-{:02}.sh1.example.net", roles[index % roles.len()], index + 1);
        let mut doc = report(&hostname);
        let (maker, model) = makers[index % makers.len()];
        let (os, version) = oses[index % oses.len()];
        doc["sections"]["board"]["data"]["manufacturer"] = json!(maker);
        doc["sections"]["board"]["data"]["model"] = json!(model);
        doc["sections"]["basic"]["data"]["os_name"] = json!(os);
        doc["sections"]["basic"]["data"]["os_version"] = json!(version);
        doc["sections"]["nic"]["data"]["interfaces"][0]["ipv4"] =
            json!([format!("10.20.{}.{}/24", index / 10, 10 + index)]);
        doc["sections"]["nic"]["data"]["interfaces"][0]["hwaddr"] =
            json!(format!("3c:fd:fe:a1:{:02x}:{:02x}", index, index * 7));
        if index % 7 == 3 {
            doc["sections"]["raid"] = json!({"status": "error", "error": "storcli64: controller 0 not found"});
        }
        let id = server.ingest(&doc).await;
        let bu = ["payments", "search", "logistics", "platform"][index % 4];
        let idc = ["sh-1", "sh-2", "bj-1"][index % 3];
        let owner = ["ops-db", "ops-web", "sre"][index % 3];
        let mut patch = json!({
            "idc": idc, "business_unit": bu, "cabinet": format!("R{:02}", 1 + index / 4), "cabinet_u": 1 + (index % 4) * 10,
            "owner": owner, "status": if index == 5 { "offline" } else { "online" },
        });
        if index % 3 == 0 {
            patch["tags"] = json!(["pci", "prod"]);
        } else {
            patch["tags"] = json!(["prod"]);
        }
        cmdb_server::service::assets::patch_business(&server.db, id, "user:admin", patch.as_object().expect("object"))
            .await
            .expect("patch");
        // Spread the history: older assets were added earlier, a day or so apart.
        let shift = i64::try_from((count - index) * 26 * 3600).expect("small") * 1_000_000;
        for sql in [
            "UPDATE changes SET recorded_at = recorded_at - $1, collected_at = collected_at - $1 WHERE asset_id = $2",
            "UPDATE assets SET created_at = created_at - $1 WHERE id = $2",
        ] {
            sqlx::query(sql).bind(shift).bind(id).execute(server.db.writer()).await.expect("shift");
        }
        assets.push((id, hostname));
    }
    // Recent reports that changed something: a disk replaced, memory added.
    for (index, (id, hostname)) in assets.iter().enumerate().filter(|(i, _)| i % 3 == 1) {
        let mut doc = common::at(report(hostname), 60);
        doc["sections"]["disk"]["data"]["disks"][1]["sn"] = json!(format!("ZA1{index:03}RPL"));
        doc["sections"]["nic"]["data"]["interfaces"][0]["ipv4"] =
            json!([format!("10.20.{}.{}/24", index / 10, 10 + index)]);
        doc["sections"]["nic"]["data"]["interfaces"][0]["hwaddr"] =
            json!(format!("3c:fd:fe:a1:{:02x}:{:02x}", index, index * 7));
        let (maker, model) = makers[index % makers.len()];
        let (os, version) = oses[index % oses.len()];
        doc["sections"]["board"]["data"]["manufacturer"] = json!(maker);
        doc["sections"]["board"]["data"]["model"] = json!(model);
        doc["sections"]["basic"]["data"]["os_name"] = json!(os);
        doc["sections"]["basic"]["data"]["os_version"] = json!(version);
        server.ingest(&doc).await;
        let shift = i64::try_from((index % 9) * 24 * 3600).expect("small") * 1_000_000;
        sqlx::query(
            "UPDATE changes SET recorded_at = recorded_at - $1, collected_at = collected_at - $1 \
             WHERE asset_id = $2 AND recorded_at > $3",
        )
        .bind(shift)
        .bind(*id)
        .bind(cmdb_server::db::now_us() - 600_000_000)
        .execute(server.db.writer())
        .await
        .expect("shift");
    }
    // One online host has gone quiet.
    sqlx::query("UPDATE assets SET last_seen_at = last_seen_at - $1 WHERE id = $2")
        .bind(12 * 86_400_000_000_i64)
        .bind(assets[8].0)
        .execute(server.db.writer())
        .await
        .expect("quiet");
    common::rechain(&server.db).await;
    assets
}

async fn wait_until(client: &Client, what: &str, script: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let value = client.execute(script, vec![]).await.expect("script");
        if value != Value::Null && value != Value::Bool(false) {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn login(client: &Client, base: &str, name: &str) {
    client.goto(&format!("{base}/login")).await.expect("login page");
    client.find(Locator::Css("#name")).await.expect("name field").send_keys(name).await.expect("type");
    client.find(Locator::Css("#password")).await.expect("password field").send_keys(PASSWORD).await.expect("type");
    client.find(Locator::Css("#login-form button[type=submit]")).await.expect("button").click().await.expect("click");
    wait_until(
        client,
        "the dashboard after login",
        "return location.pathname === '/' && !!document.querySelector('#logout-form')",
    )
    .await;
}

async fn screenshot(client: &Client, name: &str, height: u32) -> PathBuf {
    client.set_window_size(1440, height).await.expect("resize");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000, "{name} is a real PNG ({} bytes)", png.len());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, &png).expect("write screenshot");
    if std::env::var("CMDB_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
        std::fs::create_dir_all(&docs).expect("docs dir");
        std::fs::write(docs.join(format!("{name}.png")), &png).expect("write docs screenshot");
    }
    client.set_window_size(1440, 1000).await.expect("resize back");
    path
}

/// A POST from inside the page, as a script (or a forged form) would send it; returns the status.
async fn page_post(client: &Client, path: &str, fields: Value) -> u16 {
    let script = r#"
        const [path, fields, done] = arguments;
        fetch(path, {method: 'POST', body: new URLSearchParams(fields), redirect: 'manual', credentials: 'same-origin'})
            .then(r => done(r.status), e => done(String(e)));
    "#;
    let answer = client.execute_async(script, vec![json!(path), fields]).await.expect("fetch");
    answer.as_u64().and_then(|s| u16::try_from(s).ok()).unwrap_or_else(|| panic!("fetch failed: {answer}"))
}

async fn server_asset_by_tag(server: &WebServer, tag: &str) -> Option<i64> {
    sqlx::query("SELECT id FROM assets WHERE asset_tag = $1")
        .bind(tag)
        .fetch_optional(server.db.reader())
        .await
        .expect("query")
        .map(|row| sqlx::Row::try_get(&row, 0).expect("id"))
}

async fn owner_of(server: &WebServer, id: i64) -> Option<String> {
    cmdb_server::service::assets::detail(&server.db, id).await.expect("detail").business.owner
}

async fn journey(server: &WebServer, assets: &[(i64, String)], hostile: i64, client: &Client, downloads: &Path) {
    let base = &server.base;
    // (Before the figures are first read.) A retired host that reports again is flagged as a possible duplicate on the list.
    server.retired_host_reports_again("dup-old.example", "dup-new.example").await;
    // Anonymous visitors go to the login form.
    client.goto(&format!("{base}/assets")).await.expect("goto");
    wait_until(client, "the login form", "return location.pathname === '/login'").await;

    login(client, base, "editor").await;
    let tiles = client.find(Locator::Css(".tiles")).await.expect("tiles").text().await.expect("text");
    assert!(tiles.contains("27\nassets") || tiles.contains("27 assets"), "dashboard total: {tiles}");
    wait_until(client, "the chart", "return document.querySelectorAll('#changes-chart rect').length === 30").await;
    screenshot(client, "dashboard", 1500).await;

    // Search: typing filters the list in place (htmx), and the URL follows.
    client.goto(&format!("{base}/assets")).await.expect("goto list");
    let search = client.find(Locator::Css("#search")).await.expect("search box");
    search.send_keys("db-").await.expect("type");
    wait_until(
        client,
        "the live search result",
        "return document.querySelectorAll('#asset-table a.host').length === 5 && location.search.includes('q=db-')",
    )
    .await;
    let hosts: Vec<String> = {
        let mut out = Vec::new();
        for link in client.find_all(Locator::Css("#asset-table a.host")).await.expect("rows") {
            out.push(link.text().await.expect("text"));
        }
        out
    };
    assert!(hosts.iter().all(|h| h.starts_with("db-")), "{hosts:?}");
    // A filter select applies at once.
    client
        .find(Locator::Css("select[name=idc] option[value='sh-2']"))
        .await
        .expect("option")
        .click()
        .await
        .expect("pick");
    wait_until(client, "the IDC filter", "return location.search.includes('idc=sh-2')").await;
    let filtered = client.find_all(Locator::Css("#asset-table a.host")).await.expect("rows").len();
    assert_eq!(filtered, 2, "db hosts in sh-2");
    // The fleet's own domain, so the screenshot shows the fleet (and a search in use).
    client.goto(&format!("{base}/assets?q=sh1.example.net&sort=hostname")).await.expect("goto list");
    screenshot(client, "assets", 1100).await;

    // Export exactly the filtered list.
    client.goto(&format!("{base}/assets?q=db-&idc=sh-2")).await.expect("goto filtered");
    client.find(Locator::Css("#export-csv")).await.expect("csv button").click().await.expect("click");
    let deadline = Instant::now() + Duration::from_secs(20);
    let csv = loop {
        let done = std::fs::read_dir(downloads)
            .expect("downloads")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "csv"));
        if let Some(path) = done {
            break std::fs::read_to_string(path).expect("read download");
        }
        assert!(Instant::now() < deadline, "the CSV download did not arrive");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "header and the two filtered assets: {csv}");
    assert!(lines[1..].iter().all(|l| l.contains("db-") && l.contains("sh-2")), "{csv}");

    // Open an asset from the list and edit its owner.
    let (id, hostname) = assets.iter().find(|(_, h)| h.starts_with("db-02")).cloned().expect("db-02");
    client.goto(&format!("{base}/assets?q=db-02")).await.expect("goto");
    client.find(Locator::LinkText(&hostname)).await.expect("host link").click().await.expect("open");
    wait_until(client, "the detail page", &format!("return location.pathname === '/assets/{id}'")).await;
    assert_eq!(client.find(Locator::Css("#hostname")).await.expect("h1").text().await.expect("text"), hostname);
    // Components read with labels and units; the first report is one row that expands.
    let disks = client.find(Locator::Css("#section-disk")).await.expect("disks").text().await.expect("text");
    assert!(disks.contains("Capacity") && disks.contains("300 GB") && !disks.contains("capacity_bytes"), "{disks}");
    let memory = client.find(Locator::Css("#section-memory")).await.expect("memory").text().await.expect("text");
    assert!(memory.contains("16 GiB") && memory.contains("Serial number"), "{memory}");
    let first = client.find(Locator::Css("#timeline tr.first-seen summary")).await.expect("grouped first report");
    let sentence = first.text().await.expect("text");
    assert!(sentence.starts_with("first seen with 2 DIMMs, 2 disks, 1 NIC"), "{sentence}");
    let hidden = client.find(Locator::Css("#timeline tr.first-seen ul")).await.expect("its records");
    assert!(!hidden.is_displayed().await.expect("displayed"), "folded until asked");
    first.click().await.expect("expand");
    assert!(hidden.is_displayed().await.expect("displayed"), "expanded on a click");
    assert!(hidden.text().await.expect("text").contains("disk 32:1 added"));
    screenshot(client, "asset", 2600).await;
    let owner = client.find(Locator::Css("#owner")).await.expect("owner field");
    owner.clear().await.expect("clear");
    owner.send_keys("team-e2e").await.expect("type");
    client.find(Locator::Css("#business-form button[type=submit]")).await.expect("save").click().await.expect("save");
    wait_until(client, "the saved page", "return location.search.includes('saved=1')").await;
    let timeline = client.find(Locator::Css("#timeline")).await.expect("timeline").text().await.expect("text");
    assert!(timeline.contains("team-e2e") && timeline.contains("user:editor"), "{timeline}");
    assert_eq!(owner_of(server, id).await.as_deref(), Some("team-e2e"));

    // The as-of date picker: the inventory at the end of today, with collected_at beside it.
    client.goto(&format!("{base}/assets")).await.expect("goto list");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    client
        .execute("const i = document.querySelector('#as_of'); i.value = arguments[0]; i.dispatchEvent(new Event('change', {bubbles: true}));", vec![json!(today)])
        .await
        .expect("pick date");
    wait_until(client, "the as-of list", "return !!document.querySelector('.asof-banner')").await;

    // Before the history starts, the list says so instead of "No asset matches".
    client.goto(&format!("{base}/assets?as_of=2001-01-01")).await.expect("goto early");
    let start = client.find(Locator::Css("#history-starts")).await.expect("history start").text().await.expect("text");
    assert!(start.starts_with("History starts on "), "{start}");
    // The change log, readable: sentences and grouped first reports.
    client
        .goto(&format!("{base}/changes?asset={}", hostname.split('.').next().unwrap_or_default()))
        .await
        .expect("log");
    wait_until(client, "the change log", "return !!document.querySelector('#change-table tr.first-seen')").await;
    screenshot(client, "changes", 1200).await;

    // A form post without the CSRF token is refused, even with the session cookie.
    assert_eq!(
        page_post(client, &format!("/assets/{id}/business"), json!({"owner": "forged", "orig_owner": "team-e2e"}))
            .await,
        403
    );
    assert_eq!(owner_of(server, id).await.as_deref(), Some("team-e2e"));

    // Hostile host names and external sections are text: no script runs, the text is shown as typed.
    client.goto(&format!("{base}/assets/{hostile}")).await.expect("hostile page");
    let title = client.find(Locator::Css("#hostname")).await.expect("h1").text().await.expect("text");
    assert_eq!(title, "<script>window.__xss='host'</script>");
    client.goto(&format!("{base}/assets?q=%3C")).await.expect("hostile list");
    client.goto(&format!("{base}/changes")).await.expect("change log");
    let fired =
        client.execute("return window.__xss === undefined ? null : String(window.__xss)", vec![]).await.expect("check");
    assert_eq!(fired, Value::Null, "a script from the data ran");
    let images = client.execute("return document.querySelectorAll('img').length", vec![]).await.expect("count");
    assert_eq!(images, json!(0), "no <img> element was injected");

    // Import the old spreadsheet (a workbook LibreOffice wrote): check it, then import it.
    let workbook = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/old-inventory-libreoffice.xlsx");
    client.goto(&format!("{base}/assets")).await.expect("goto list");
    client.find(Locator::Css("#import-link")).await.expect("import link").click().await.expect("click");
    wait_until(client, "the import page", "return location.pathname === '/import'").await;
    client
        .find(Locator::Css("#import-file"))
        .await
        .expect("file input")
        .send_keys(workbook)
        .await
        .expect("choose file");
    client.find(Locator::Css("#import-check")).await.expect("check").click().await.expect("click");
    wait_until(client, "the check's report", "return !!document.querySelector('#import-results')").await;
    let actions = client
        .execute(
            "return [...document.querySelectorAll('#import-results td[class^=action-]')].map(td => td.textContent)",
            vec![],
        )
        .await
        .expect("actions");
    assert_eq!(actions, json!(["create", "create", "create"]), "a check says what each row would do");
    assert!(server_asset_by_tag(server, "IT-2019-0001").await.is_none(), "a check writes nothing");
    client
        .find(Locator::Css("#import-file"))
        .await
        .expect("file input")
        .send_keys(workbook)
        .await
        .expect("choose file");
    client.find(Locator::Css("#import-apply")).await.expect("apply").click().await.expect("click");
    wait_until(
        client,
        "the import's report",
        "return /Imported/.test(document.querySelector('#import-report h2').textContent)",
    )
    .await;
    screenshot(client, "import", 900).await;
    let created = server_asset_by_tag(server, "IT-2019-0001").await.expect("the row was imported");
    client.goto(&format!("{base}/assets/{created}")).await.expect("goto imported");
    let page = client.source().await.expect("source");
    assert!(page.contains("12999.5") && page.contains("2019-03-01"), "the custom values are on the asset page");

    // Log out: back to the form, and the session is gone.
    client.find(Locator::Css("#logout-form button")).await.expect("logout").click().await.expect("click");
    wait_until(client, "the login page after logout", "return location.pathname === '/login'").await;
    client.goto(&format!("{base}/assets")).await.expect("goto");
    wait_until(client, "a redirect to login", "return location.pathname === '/login'").await;

    // A viewer sees no edit form, and a post with a valid token is refused by role.
    login(client, base, "viewer").await;
    client.goto(&format!("{base}/assets/{id}")).await.expect("detail");
    assert!(client.find(Locator::Css("#business-form")).await.is_err(), "viewers get no edit form");
    let csrf = client
        .execute("return document.querySelector('#logout-form input[name=csrf]').value", vec![])
        .await
        .expect("token");
    let status = page_post(
        client,
        &format!("/assets/{id}/business"),
        json!({"csrf": csrf, "owner": "viewer", "orig_owner": "team-e2e"}),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(owner_of(server, id).await.as_deref(), Some("team-e2e"));

    client.goto(&format!("{base}/assets?q=dup-")).await.expect("goto duplicates");
    let badges = client.find_all(Locator::Css("#asset-table span.badge.duplicate")).await.expect("badges");
    assert_eq!(badges.len(), 2, "both records are flagged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_journey() {
    ensure_chromium();
    let db = TestDb::new(Backend::Sqlite).await;
    let server = WebServer::start(&db).await;
    let assets = seed(&server).await;
    let mut doc = report("<script>window.__xss='host'</script>");
    doc["sections"]["inventory-ext"] = json!({"status": "ok", "data": {"note": "\"><img src=x onerror=\"window.__xss='ext'\">", "k": "<script>window.__xss='ext2'</script>"}});
    let hostile = server.ingest(&doc).await;
    let patch = json!({"tags": ["\"><img src=x onerror=\"window.__xss='tag'\">"]});
    cmdb_server::service::assets::patch_business(&server.db, hostile, "user:admin", patch.as_object().expect("object"))
        .await
        .expect("patch");

    let driver = Driver::start();
    let profile = tempfile::tempdir().expect("profile dir");
    let downloads = tempfile::tempdir().expect("downloads dir");
    let client = browser(&driver, profile.path(), downloads.path()).await;
    let outcome =
        tokio::time::timeout(Duration::from_secs(240), journey(&server, &assets, hostile, &client, downloads.path()))
            .await;
    let _ = client.close().await;
    outcome.expect("the browser journey took longer than 4 minutes");

    // What the journey did is in the audit log.
    let actions: Vec<String> = sqlx::query("SELECT action FROM audit_log ORDER BY id")
        .fetch_all(server.db.reader())
        .await
        .expect("audit")
        .iter()
        .map(|r| r.try_get(0).expect("text"))
        .collect();
    assert_eq!(actions, vec!["login", "export.csv", "import", "logout", "login"], "{actions:?}");
}

/// A phone: Chromium's mobile emulation at 360 x 740.
async fn phone(driver: &Driver, profile: &Path) -> Client {
    let emulation =
        json!({"mobileEmulation": {"deviceMetrics": {"width": 360, "height": 740, "pixelRatio": 2.0, "touch": true}}});
    chromium(driver, profile, &[], emulation).await
}

/// The scan page on a 360 px phone, driven like a barcode scanner: ten codes typed, each with
/// Enter, answered in place (verified, moved, unknown, already seen) with running counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_page_on_a_phone() {
    ensure_chromium();
    let db = TestDb::new(Backend::Sqlite).await;
    let server = WebServer::start(&db).await;
    for n in 1..=8 {
        let id = server.ingest(&report(&format!("rack-{n:02}.bj1"))).await;
        let patch = json!({"idc": "bj-1", "cabinet": "A01", "asset_tag": format!("BJ-{n:04}")});
        cmdb_server::service::assets::patch_business(&server.db, id, "user:admin", patch.as_object().expect("object"))
            .await
            .expect("patch");
    }
    let new = cmdb_server::service::stocktakes::NewStocktake {
        name: "BJ-1 year end".into(),
        scope: json!({"idc": "bj-1"}).as_object().cloned().expect("scope"),
    };
    let opened = cmdb_server::service::stocktakes::open(&server.db, new, "user:editor").await.expect("open");
    let driver = Driver::start();
    let profile = tempfile::tempdir().expect("profile dir");
    let client = phone(&driver, profile.path()).await;
    let run = async {
        let base = &server.base;
        login(&client, base, "editor").await;
        client.goto(&format!("{base}/stocktakes/{}/scan", opened.id)).await.expect("scan page");
        let width = client.execute("return document.documentElement.scrollWidth", vec![]).await.expect("width");
        assert!(width.as_i64().is_some_and(|w| w <= 360), "the page fits 360 px: {width}");
        let focused = client.execute("return document.activeElement.id", vec![]).await.expect("focus");
        assert_eq!(focused, json!("scan-code"), "the code field is focused");
        // The location for this run of scans.
        client.find(Locator::Css("#scan-idc")).await.expect("idc").send_keys("bj-1").await.expect("type");
        client.find(Locator::Css("#scan-cabinet")).await.expect("cabinet").send_keys("A01").await.expect("type");
        client.execute("document.getElementById('scan-code').focus()", vec![]).await.expect("focus");
        // Seven tags where the record says, one host name, one unknown code, one repeat.
        let codes = [
            "BJ-0001",
            "BJ-0002",
            "BJ-0003",
            "BJ-0004",
            "BJ-0005",
            "BJ-0006",
            "rack-07.bj1",
            "NOPE-1",
            "BJ-0001",
            "BJ-0008",
        ];
        for code in codes {
            // As a scanner does: the code's keys, then Enter, into whatever has the focus.
            let field = client.active_element().await.expect("focused element");
            field.send_keys(&format!("{code}\u{E007}")).await.expect("scan");
        }
        wait_until(
            &client,
            "ten answers",
            "return document.querySelectorAll('#scan-results li:not(.pending)').length === 10",
        )
        .await;
        let classes = client
            .execute(
                "return [...document.querySelectorAll('#scan-results li')].map(li => li.className).reverse()",
                vec![],
            )
            .await
            .expect("classes");
        assert_eq!(
            classes,
            json!([
                "verified",
                "verified",
                "verified",
                "verified",
                "verified",
                "verified",
                "verified",
                "unknown",
                "already_seen",
                "verified"
            ])
        );
        let verified = client
            .execute("return document.querySelector('[data-count=verified]').textContent", vec![])
            .await
            .expect("count");
        assert_eq!(verified, json!("8"));
        let pending =
            client.execute("return document.getElementById('scan-pending').hidden", vec![]).await.expect("pending");
        assert_eq!(pending, json!(true), "nothing waits to be sent");
        // The network drops for two requests: the scan waits, is shown as waiting, and goes out.
        client
            .execute(
                "const real = window.fetch; let failures = 2; \
                 window.fetch = (...args) => failures-- > 0 ? Promise.reject(new Error('offline')) : real(...args);",
                vec![],
            )
            .await
            .expect("break the network");
        let field = client.active_element().await.expect("focused element");
        field.send_keys("BJ-0007\u{E007}").await.expect("scan");
        let waiting = wait_until(
            &client,
            "the scan shown as waiting",
            "const p = document.getElementById('scan-pending'); return !p.hidden && p.textContent",
        )
        .await;
        assert_eq!(waiting, json!("1 scan(s) waiting to be sent"));
        wait_until(
            &client,
            "the scan sent after the retries",
            "return document.querySelector('#scan-results li').className === 'already_seen' \
             && document.getElementById('scan-pending').hidden",
        )
        .await;
        let png = client.screenshot().await.expect("screenshot");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("scan.png"), &png).expect("write");
        if std::env::var("CMDB_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
            let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots/scan.png");
            std::fs::write(docs, &png).expect("write docs screenshot");
        }
    };
    let outcome = tokio::time::timeout(Duration::from_secs(120), run).await;
    let _ = client.close().await;
    outcome.expect("the scan journey took longer than 2 minutes");
    let stocktake = cmdb_server::service::stocktakes::get(&server.db, opened.id).await.expect("stocktake");
    assert_eq!((stocktake.counts.verified, stocktake.counts.unexpected, stocktake.sightings.len()), (8, 1, 11));
}

//! The pages over HTTP against a real server on SQLite and PostgreSQL: hostile text is shown as
//! text everywhere; search, filters, sort and pages; the dashboard's figures; business edits
//! (validation, concurrent edits); the change and error logs; exports and the as-of view.

mod common;
mod web_support;

use common::{Backend, TestDb, report};
use serde_json::{Value, json};
use sqlx::Row;
use web_support::{WebServer, hidden_value};

const HOSTILE: &[&str] = &["<script>alert", "<img src=x", "<b onmouseover", "<svg onload"];

fn assert_inert(page: &str, body: &str) {
    for needle in HOSTILE {
        assert!(!body.contains(needle), "{page} contains raw {needle:?}");
    }
}

/// A report with the given host name and an external section full of markup.
fn hostile_report(hostname: &str) -> Value {
    let mut doc = report(hostname);
    doc["sections"]["inventory-ext"] = json!({"status": "ok", "data": {
        "<script>alert('key')</script>": "\"><img src=x onerror=alert('value')>",
        "nested": {"deep": "<svg onload=alert('nested')>"},
        "list": ["<b onmouseover=alert('list')>hover</b>"]
    }});
    doc["sections"]["raid"] = json!({"status": "error", "error": "<script>alert('collection error')</script>"});
    doc
}

async fn hostile_text_is_shown_as_text_everywhere(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = WebServer::start(&db).await;
    let script_host = server.ingest(&hostile_report("<script>alert('host')</script>")).await;
    let img_host = server.ingest(&hostile_report("\"><img src=x onerror=alert('host2')>")).await;
    let patch = json!({"tags": ["\"><img src=x onerror=alert('tag')>", "plain"], "owner": "<b onmouseover=alert('owner')>x</b>",
        "business_unit": "<script>alert('bu')</script>", "idc": "\"><svg onload=alert('idc')>"});
    cmdb_server::service::assets::patch_business(
        &server.db,
        script_host,
        "user:editor",
        patch.as_object().expect("object"),
    )
    .await
    .expect("patch");
    let mut admin = server.login("admin").await;
    // Admin objects with hostile names too.
    let csrf = admin.csrf().await;
    let made = admin
        .post_form("/admin/tokens", &[("csrf", &csrf), ("name", "<script>alert('token')</script>"), ("role", "viewer")])
        .await;
    assert_eq!(made.status, 200, "{}", made.body);
    let made = admin
        .post_form("/admin/keys", &[("csrf", &csrf), ("name", "<img src=x onerror=alert('key')>"), ("scope", "host")])
        .await;
    assert_eq!(made.status, 200, "{}", made.body);

    let pages = [
        "/".to_owned(),
        "/assets".to_owned(),
        "/assets?q=%3Cscript%3E".to_owned(),
        "/assets?tag=%22%3E%3Cimg+src%3Dx+onerror%3Dalert(%27tag%27)%3E".to_owned(),
        format!("/assets/{script_host}"),
        format!("/assets/{img_host}"),
        "/changes".to_owned(),
        "/errors".to_owned(),
        "/admin/tokens".to_owned(),
        "/admin/keys".to_owned(),
        "/admin/audit".to_owned(),
        "/assets?q=%3Cscript%3Ealert(%27x%27)%3C%2Fscript%3E".to_owned(),
        "/changes?asset=%3Cscript%3Ealert(%27host%27)%3C%2Fscript%3E".to_owned(),
    ];
    for page in &pages {
        let answer = admin.get(page).await;
        assert_eq!(answer.status, 200, "{page}: {}", answer.body);
        assert_inert(page, &answer.body);
    }
    // The htmx fragment is escaped as well.
    let fragment = admin.get_with("/assets", &[("hx-request", "true"), ("hx-target", "results")]).await;
    assert!(!fragment.body.contains("<html"), "htmx gets the rows only");
    assert_inert("htmx fragment", &fragment.body);

    // And the text is there, escaped, where people expect it.
    let detail = admin.get(&format!("/assets/{script_host}")).await.body;
    for shown in [
        "&lt;script&gt;alert(&#x27;host&#x27;)&lt;&#x2f;script&gt;",
        "&lt;svg onload=alert(&#x27;nested&#x27;)&gt;",
        "&lt;script&gt;alert(&#x27;collection error&#x27;)&lt;&#x2f;script&gt;",
        "&lt;b onmouseover=alert(&#x27;owner&#x27;)&gt;",
    ] {
        assert!(detail.contains(shown), "detail lacks {shown}");
    }
    let list = admin.get("/assets").await.body;
    assert!(list.contains("&quot;&gt;&lt;img src=x onerror=alert(&#x27;tag&#x27;)&gt;"), "the tag is listed as text");
    assert!(
        list.contains("&quot;&gt;&lt;img src=x onerror=alert(&#x27;host2&#x27;)&gt;"),
        "the host name is listed as text"
    );
    let audit = admin.get("/admin/audit").await.body;
    assert!(audit.contains("&lt;script&gt;alert(&#x27;token&#x27;)"), "the audit log shows the token name as text");
}

/// Twelve hosts over three IDCs, two OSes and two business units.
async fn seed_fleet(server: &WebServer) -> Vec<i64> {
    let mut ids = Vec::new();
    for index in 0..12 {
        let hostname = format!("{}-{index:02}.example", if index % 2 == 0 { "web" } else { "db" });
        let mut doc = report(&hostname);
        doc["sections"]["nic"]["data"]["interfaces"][0]["ipv4"] = json!([format!("10.1.0.{}/24", index + 10)]);
        doc["sections"]["nic"]["data"]["interfaces"][0]["hwaddr"] = json!(format!("00:1c:42:00:00:{index:02x}"));
        if index >= 8 {
            doc["sections"]["basic"]["data"]["os_name"] = json!("Rocky Linux");
        }
        let id = server.ingest(&doc).await;
        let idc = ["sh-1", "bj-2", "gz-3"][index % 3];
        let patch = json!({
            "idc": idc,
            "business_unit": if index < 6 { "payments" } else { "search" },
            "tags": if index % 4 == 0 { json!(["pci"]) } else { json!([]) },
            "status": if index == 11 { "offline" } else { "online" },
            "owner": if index % 4 == 1 { json!("Alice Ops") } else { Value::Null },
            "cabinet": format!("R{:02}", index / 4),
        });
        cmdb_server::service::assets::patch_business(&server.db, id, "user:seed", patch.as_object().expect("object"))
            .await
            .expect("patch");
        ids.push(id);
    }
    ids
}

fn header_key(label: &str) -> &'static str {
    match label {
        "Serial" => "serial",
        "Cabinet" => "cabinet",
        _ => "disk_bytes",
    }
}

fn rows(body: &str) -> usize {
    body.matches("class=\"host\"").count()
}

async fn list_search_filters_sort_and_pages(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = WebServer::start(&db).await;
    seed_fleet(&server).await;
    let mut viewer = server.login("viewer").await;

    let all = viewer.get("/assets").await;
    assert_eq!(all.status, 200);
    assert_eq!(rows(&all.body), 12);
    assert!(all.body.contains("<strong>12</strong> assets"));
    for (query, expected) in [
        ("q=web", 6),               // part of a host name
        ("q=10.1.0.13", 1),         // an IP address
        ("q=00:1C:42:00:00:0A", 1), // a MAC, any case
        ("q=sn-db-03", 1),          // a board serial
        ("q=poweredge", 12),        // a model
        ("idc=bj-2", 4),
        ("business_unit=search&os=Rocky+Linux", 4),
        ("tag=pci", 3),
        ("status=offline", 1),
        ("q=web&idc=sh-1", 2),
        ("q=nothing-matches-this", 0),
        ("q=00-1C-42-00-00-0A", 1), // a MAC with dashes
        ("q=001c.4200.000a", 1),    // Cisco's notation
        ("q=001C4200000A", 1),      // bare hex
        ("q=001c42", 12),           // the start of one
        ("q=alice", 3),             // an owner
        ("q=BJ-2", 4),              // an IDC
        ("q=r02", 4),               // a cabinet
        ("owner=Alice+Ops", 3),
    ] {
        let page = viewer.get(&format!("/assets?{query}")).await;
        assert_eq!(page.status, 200, "{query}");
        assert_eq!(rows(&page.body), expected, "{query}");
    }
    // The owner select offers the owners; the default columns include serial, cabinet and disk.
    assert!(all.body.contains(r#"<select name="owner" aria-label="Owner">"#) && all.body.contains("Alice Ops"));
    for header in ["Serial", "Cabinet", "Disk"] {
        assert!(all.body.contains(&format!("data-sort=\"{}\">{header} ", header_key(header))), "{header} column");
    }
    assert!(all.body.contains(r#"<span title="599999998000 bytes">600 GB</span>"#), "total disk, decimal units");
    assert!(!all.body.contains("fe80::"), "link-local addresses are not listed");
    // A person chooses the columns.
    let chosen = viewer.get("/assets?cols=owner,tags").await.body;
    assert!(chosen.contains("data-sort=\"owner\">Owner ") && !chosen.contains("data-sort=\"serial\""));
    assert_eq!(rows(&chosen), 12);
    // Sorting: descending host names put web-10 first; the header links flip the direction.
    let sorted = viewer.get("/assets?sort=-hostname").await.body;
    let first = sorted.find("web-10.example").expect("web-10");
    let last = sorted.find("db-01.example").expect("db-01");
    assert!(first < last);
    assert!(sorted.contains("href=\"&#x2f;assets?sort=hostname\""), "the active column links to the other direction");
    // Pages of five.
    let page1 = viewer.get("/assets?per_page=5").await.body;
    assert_eq!(rows(&page1), 5);
    assert!(page1.contains("page 1 of 3"));
    let next = page1.split("rel=\"next\"").next().and_then(|head| head.rsplit("href=\"").next()).expect("next link");
    let next = next.split('"').next().expect("href").replace("&#x2f;", "/").replace("&amp;", "&");
    assert_eq!(next, "/assets?page=2&per_page=5");
    let page3 = viewer.get("/assets?per_page=5&page=3").await.body;
    assert_eq!(rows(&page3), 2);
    // Bad parameters are a 400 page, not a 500.
    let bad = viewer.get("/assets?page=first").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("bad query parameter"));
    // Live search through htmx returns the rows only.
    let fragment = viewer.get_with("/assets?q=db", &[("hx-request", "true"), ("hx-target", "results")]).await;
    assert_eq!(rows(&fragment.body), 6);
    assert!(!fragment.body.contains("<form method=\"get\" action=\"/assets\""));
}

async fn dashboard_figures(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = WebServer::start(&db).await;
    let ids = seed_fleet(&server).await;
    // One online host has not reported for ten days.
    let old = cmdb_server::db::now_us() - 10 * 86_400_000_000;
    sqlx::query("UPDATE assets SET last_seen_at = $1 WHERE id = $2")
        .bind(old)
        .bind(ids[3])
        .execute(server.db.writer())
        .await
        .expect("age");
    let mut viewer = server.login("viewer").await;
    let page = viewer.get("/").await;
    assert_eq!(page.status, 200);
    let body = page.body;
    assert!(body.contains("<span class=\"big\">12</span> assets"), "total");
    assert!(body.contains("<span class=\"big\">11</span> online"), "status counts");
    assert!(body.contains("<span class=\"big\">1</span> offline"));
    assert!(
        body.contains("Rocky Linux</a></td>\n      <td class=\"num\">4</td>"),
        "OS counts link to the filtered list"
    );
    assert!(body.contains("payments</a></td>\n      <td class=\"num\">6</td>"), "business unit counts");
    assert_eq!(body.matches("<rect ").count(), 30, "one bar per day");
    assert!(body.contains("<span class=\"big\">1</span> online, not seen for 7 days"));
    assert!(body.contains("db-03.example"), "the stale host is listed");
    let longer = viewer.get("/?stale_days=30").await.body;
    assert!(longer.contains("<span class=\"big\">0</span> online, not seen for 30 days"));
    // The collection error of the seeded reports is not there; add one and see it.
    let mut doc = report("web-00.example");
    doc["collected_at"] = json!((chrono::Utc::now() + chrono::Duration::seconds(5)).to_rfc3339());
    doc["sections"]["disk"] = json!({"status": "error", "error": "storcli64: command not found"});
    server.ingest(&doc).await;
    let body = viewer.get("/").await.body;
    assert!(body.contains("storcli64: command not found"));
    let errors = viewer.get("/errors?section=disk").await.body;
    assert!(errors.contains("storcli64: command not found"));
    assert!(viewer.get("/errors?section=cpu").await.body.contains("No collection error matches"));
}

async fn business_edits_validation_and_concurrency(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = WebServer::start(&db).await;
    let id = server.ingest(&report("app-01")).await;
    let path = format!("/assets/{id}/business");
    let mut alice = server.login("editor").await;
    let mut bob = server.login("admin").await;
    let form_of = |html: &str| -> Vec<(String, String)> {
        let mut fields = Vec::new();
        for name in cmdb_model::business::FIELD_NAMES {
            let orig = hidden_value(html, &format!("orig_{name}")).unwrap_or_default();
            fields.push((format!("orig_{name}"), orig.clone()));
            fields.push(((*name).to_owned(), orig));
        }
        fields.push(("csrf".to_owned(), hidden_value(html, "csrf").expect("csrf")));
        fields
    };
    let set = |fields: &mut Vec<(String, String)>, name: &str, value: &str| {
        for field in fields.iter_mut() {
            if field.0 == name {
                field.1 = value.to_owned();
            }
        }
    };
    let post = |fields: &Vec<(String, String)>| fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>();
    let page_a = alice.get(&format!("/assets/{id}")).await.body;
    let page_b = bob.get(&format!("/assets/{id}")).await.body;

    // An invalid value is refused with the reason, and nothing is written.
    let before: i64 = sqlx::query("SELECT COUNT(*) FROM changes")
        .fetch_one(server.db.reader())
        .await
        .expect("n")
        .try_get(0)
        .expect("i");
    let mut fields = form_of(&page_a);
    set(&mut fields, "ssh_port", "99999");
    let pairs = post(&fields);
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let refused = alice.post_form(&path, &refs).await;
    assert_eq!(refused.status, 422);
    assert!(refused.body.contains("ssh_port: must be an integer from 1 to 65535"), "{}", refused.body);
    assert!(refused.body.contains("value=\"99999\""), "the typed value is kept");
    let after: i64 = sqlx::query("SELECT COUNT(*) FROM changes")
        .fetch_one(server.db.reader())
        .await
        .expect("n")
        .try_get(0)
        .expect("i");
    assert_eq!(before, after);

    // Alice sets the owner.
    let mut fields = form_of(&page_a);
    set(&mut fields, "owner", "alice-team");
    set(&mut fields, "tags", "db, pci");
    let pairs = post(&fields);
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let saved = alice.post_form(&path, &refs).await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    // Bob, from his older page, changes the IDC: Alice's owner stays.
    let mut fields = form_of(&page_b);
    set(&mut fields, "idc", "sh-1");
    let pairs = post(&fields);
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(bob.post_form(&path, &refs).await.status, 303);
    let detail = cmdb_server::service::assets::detail(&server.db, id).await.expect("detail");
    assert_eq!(detail.business.owner.as_deref(), Some("alice-team"));
    assert_eq!(detail.business.idc.as_deref(), Some("sh-1"));
    assert_eq!(detail.business.tags, vec!["db", "pci"]);
    // Bob, still from his older page, changes the owner too: refused, not overwritten.
    let mut fields = form_of(&page_b);
    set(&mut fields, "owner", "bob-team");
    let pairs = post(&fields);
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let conflict = bob.post_form(&path, &refs).await;
    assert_eq!(conflict.status, 422);
    assert!(conflict.body.contains("Someone else changed owner"), "{}", conflict.body);
    let detail = cmdb_server::service::assets::detail(&server.db, id).await.expect("detail");
    assert_eq!(detail.business.owner.as_deref(), Some("alice-team"));
    // Saving the re-rendered form (which now carries the current originals) applies.
    let pairs = post(&form_of(&conflict.body));
    let mut fields: Vec<(String, String)> = pairs;
    set(&mut fields, "owner", "bob-team");
    let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(bob.post_form(&path, &refs).await.status, 303);

    // The timeline shows each edit with old -> new and its person.
    let page = alice.get(&format!("/assets/{id}")).await.body;
    assert!(page.contains("user:editor") && page.contains("user:admin"));
    assert!(page.contains("<span class=\"old\">alice-team</span> → <span class=\"new\">bob-team</span>"), "old -> new");
    // The change log filters by person, action, asset and date.
    let people = alice.get("/changes?source=user").await.body;
    assert!(people.contains("bob-team") && !people.contains("<td>ssh</td>"), "only people's edits");
    let by_name = alice.get("/changes?source=user%3Aeditor").await.body;
    assert!(by_name.contains("alice-team") && !by_name.contains("<span class=\"new\">bob-team"));
    let by_asset = alice.get("/changes?asset=app-01&section=business&action=changed").await.body;
    assert!(by_asset.contains("bob-team"));
    assert!(alice.get("/changes?asset=no-such-host").await.body.contains("No change matches"));
    assert!(alice.get("/changes?to=2000-01-01").await.body.contains("No change matches"));
}

async fn exports_and_the_as_of_view(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = WebServer::start(&db).await;
    let ids = seed_fleet(&server).await;
    let mut viewer = server.login("viewer").await;
    let list = viewer.get("/assets?idc=bj-2&sort=hostname").await.body;
    let href = list
        .split("id=\"export-csv\"")
        .next()
        .and_then(|head| head.rsplit("href=\"").next())
        .and_then(|tail| tail.split('"').next())
        .expect("export link")
        .replace("&#x2f;", "/")
        .replace("&amp;", "&");
    assert_eq!(href, "/assets/export.csv?idc=bj-2&sort=hostname");
    let csv = viewer.get(&href).await;
    assert_eq!(csv.status, 200, "{}", csv.body);
    assert!(
        csv.headers.get("content-disposition").and_then(|v| v.to_str().ok()).unwrap_or("").starts_with("attachment;")
    );
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines.len(), 5, "a header and exactly the four filtered assets: {}", csv.body);
    assert!(lines[1..].iter().all(|l| l.contains("bj-2")));
    let xlsx = viewer.get("/assets/export.xlsx?idc=bj-2").await;
    assert_eq!(xlsx.status, 200);
    assert!(xlsx.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").contains("spreadsheetml"));
    let exports: i64 = sqlx::query(
        "SELECT COUNT(*) FROM audit_log WHERE actor = 'viewer' AND action LIKE 'export.%' AND detail LIKE '%idc=bj-2%'",
    )
    .fetch_one(server.db.reader())
    .await
    .expect("audit")
    .try_get(0)
    .expect("int");
    assert_eq!(exports, 2, "exports are audited");

    // As of yesterday nothing existed; as of today everything does.
    // As if written 130 s ago: an as-of reads at the latest 120 s before now. "Today" is the day of
    // the aged history, so the test holds across midnight.
    common::age_history(&server.db, 130).await;
    let aged = chrono::Utc::now() - chrono::Duration::seconds(130);
    let yesterday = (aged - chrono::Duration::days(1)).format("%Y-%m-%d").to_string();
    let today = aged.format("%Y-%m-%d").to_string();
    let past = viewer.get(&format!("/assets?as_of={yesterday}")).await;
    assert_eq!(past.status, 200, "{}", past.body);
    assert!(past.body.contains("Inventory as of"), "the as-of banner");
    assert_eq!(rows(&past.body), 0);
    assert!(past.body.contains("id=\"history-starts\"") && past.body.contains("History starts on"), "{}", past.body);
    assert!(!past.body.contains("No asset matches"), "an empty past is not 'nothing matches'");
    let now = viewer.get(&format!("/assets?as_of={today}&idc=bj-2")).await.body;
    assert_eq!(rows(&now), 4);
    assert!(now.contains("Last collected"), "collected_at beside the recorded time");
    let before = viewer.get(&format!("/assets/{}?as_of={yesterday}", ids[0])).await;
    assert_eq!(before.status, 404);
    assert!(before.body.contains("did not exist yet"));
    // A page with the navigation and the way to the asset's first day, not a bare 404.
    assert!(before.body.contains("href=\"/changes\"") && before.body.contains("id=\"not-yet\""), "{}", before.body);
    assert!(before.body.contains("Its history starts on"), "{}", before.body);
    assert!(before.body.contains(&format!("/assets/{}?as_of={today}", ids[0])), "{}", before.body);
    let detail = viewer.get(&format!("/assets/{}?as_of={today}", ids[0])).await;
    assert_eq!(detail.status, 200);
    assert!(detail.body.contains("The data shown was collected at"));
    let dated_csv = viewer.get(&format!("/assets/export.csv?as_of={yesterday}")).await;
    assert_eq!(dated_csv.status, 200);
    assert_eq!(dated_csv.body.lines().count(), 1, "as of yesterday the export has only its header");
    assert!(viewer.get("/assets?as_of=31.12.2026").await.status == 400);
}

async fn managed_lists_constrain_the_edit_form(backend: Backend) {
    use cmdb_server::service::lists::{self, ListKind};
    let db = TestDb::new(backend).await;
    let server = WebServer::start(&db).await;
    let id = server.ingest(&report("rack-host-01")).await;
    for value in ["sh-1", "bj-2"] {
        lists::add(&server.db, ListKind::Idc, value, "", "admin").await.expect("add");
    }
    let mut editor = server.login("editor").await;
    let page = editor.get(&format!("/assets/{id}")).await.body;
    assert!(page.contains("<select name=\"idc\">"), "a managed list is a select box");
    assert!(page.contains("<input name=\"business_unit\""), "an empty list leaves the field free");
    let csrf = hidden_value(&page, "csrf").expect("csrf");
    let path = format!("/assets/{id}/business");
    let refused = editor
        .post_form(
            &path,
            &[("csrf", &csrf), ("idc", "gz-9"), ("orig_idc", ""), ("status", "online"), ("orig_status", "online")],
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body.contains("not in the managed idc list"), "{}", refused.body);
    assert_eq!(cmdb_server::service::assets::detail(&server.db, id).await.expect("detail").business.idc, None);
    let saved = editor
        .post_form(
            &path,
            &[("csrf", &csrf), ("idc", "bj-2"), ("orig_idc", ""), ("status", "online"), ("orig_status", "online")],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    assert_eq!(
        cmdb_server::service::assets::detail(&server.db, id).await.expect("detail").business.idc.as_deref(),
        Some("bj-2")
    );

    // The lists page: editors add and describe, only admins remove, and only unused values.
    let page = editor.get("/lists").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("bj-2") && page.body.contains("sh-1"));
    let added = editor
        .post_form(
            "/lists",
            &[("csrf", &csrf), ("action", "add"), ("list", "idc"), ("value", "gz-9"), ("description", "Guangzhou")],
        )
        .await;
    assert_eq!(added.status, 303, "{}", added.body);
    let removal = [("csrf", csrf.as_str()), ("action", "remove"), ("list", "idc"), ("value", "gz-9")];
    assert_eq!(editor.post_form("/lists", &removal).await.status, 403);
    let mut admin = server.login("admin").await;
    let admin_csrf = admin.csrf().await;
    let in_use = admin
        .post_form("/lists", &[("csrf", &admin_csrf), ("action", "remove"), ("list", "idc"), ("value", "bj-2")])
        .await;
    assert_eq!(in_use.status, 409, "a value in use stays");
    let removed = admin
        .post_form("/lists", &[("csrf", &admin_csrf), ("action", "remove"), ("list", "idc"), ("value", "gz-9")])
        .await;
    assert_eq!(removed.status, 303);
    assert!(!admin.get("/lists").await.body.contains("Guangzhou"));
    assert_eq!(
        editor.post_form("/lists", &[("action", "add"), ("list", "idc"), ("value", "x")]).await.status,
        403,
        "CSRF"
    );
}

/// The asset page reads as people read (labels, units, lists, sentences, the first report as one
/// row), and the change log takes several actions at once and any part of a current or former
/// host name.
async fn readable_asset_page_and_change_log(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = WebServer::start(&db).await;
    let id = server.ingest(&report("web-01.example")).await;
    // Renamed: the same board serial reports a new host name, and a disk was pulled.
    let mut renamed = common::at(report("app-01.example"), 60);
    renamed["sections"]["board"]["data"]["sn"] = json!("SN-web-01.example");
    renamed["sections"]["disk"]["data"]["disks"] = json!([renamed["sections"]["disk"]["data"]["disks"][0].clone()]);
    assert_eq!(server.ingest(&renamed).await, id, "the same asset, renamed");
    let mut viewer = server.login("viewer").await;
    let page = viewer.get(&format!("/assets/{id}")).await;
    assert_eq!(page.status, 200);
    let body = &page.body;
    for readable in [
        "<th>Capacity</th>",
        "<th>Serial number</th>",
        r#"<span title="299,999,999,000 bytes" class="exact">300 GB</span>"#,
        r#"<span title="16,384 MiB" class="exact">16 GiB</span>"#,
        "2133 MT&#x2f;s",
        "<li>10.0.0.5&#x2f;24</li>",
        "<dt>Logical CPUs</dt>",
        "first seen with 2 DIMMs, 2 disks, 1 NIC",
        "disk 32:1 removed",
    ] {
        assert!(
            body.contains(readable),
            "the asset page shows {readable:?}: {}",
            &body[body.find("section-memory").unwrap_or(0)..]
        );
    }
    let components = &body[body.find("id=\"section-memory\"").expect("memory table")..];
    let components = &components[..components.find("id=\"timeline\"").expect("timeline")];
    for raw in ["capacity_bytes", "capacity_mb", "pd_type", "hwaddr", "[&quot;10.0.0.5"] {
        assert!(!components.contains(raw), "no raw key or JSON in the component tables: {raw}");
    }
    // The change log: a former name and a part of the current one find the asset.
    for asset in ["web-01.example", "web-01", "APP-01"] {
        let log = viewer.get(&format!("/changes?asset={asset}")).await;
        assert_eq!(log.status, 200);
        assert!(log.body.contains("first seen with 2 DIMMs, 2 disks, 1 NIC"), "asset={asset}");
        assert!(log.body.contains("disk 32:1 removed"), "asset={asset}");
    }
    let nothing = viewer.get("/changes?asset=no-such-host").await.body;
    assert!(nothing.contains("No change matches."));
    // Several actions at once: a removal and a change, never the first report's additions.
    let log = viewer.get("/changes?action=removed&action=changed").await.body;
    assert!(log.contains("disk 32:1 removed") && log.contains("changed from"), "{log}");
    assert!(!log.contains("first seen"), "additions are not selected");
    assert!(log.contains(r#"value="removed" checked"#) && log.contains(r#"value="changed" checked"#));
    assert_eq!(viewer.get("/changes?action=moved").await.status, 400);
}

/// Two records that share a board serial (a retired host that reports again) are flagged on the
/// list, on both asset pages, in the API and in the audit export; a placeholder serial flags
/// nothing.
async fn possible_duplicates_are_flagged_everywhere(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = WebServer::start(&db).await;
    // The machine comes back under a new name: retired assets are never matched, so a new record.
    let (old, new) = server.retired_host_reports_again("web-01.example", "web-01-new.example").await;
    assert_ne!(new, old);
    // Two others share only a placeholder serial: not duplicates.
    for (n, host) in ["oem-1.example", "oem-2.example"].into_iter().enumerate() {
        let mut doc = report(host);
        doc["sections"]["board"]["data"]["sn"] = json!("To Be Filled By O.E.M.");
        // Their own network cards: a shared MAC address would rightly flag them.
        doc["sections"]["nic"]["data"]["interfaces"][0]["hwaddr"] = json!(format!("00:1c:42:00:00:0{n}"));
        server.ingest(&doc).await;
    }
    let mut viewer = server.login("viewer").await;
    let list = viewer.get("/assets").await.body;
    assert_eq!(list.matches("possible duplicate</span>").count(), 2, "both records, and only they, are flagged");
    for (id, other, other_name) in [(old, new, "web-01-new.example"), (new, old, "web-01.example")] {
        let page = viewer.get(&format!("/assets/{id}")).await.body;
        assert!(page.contains("id=\"possible-duplicates\""), "asset {id}");
        assert!(page.contains(&format!("{other_name}</a> (asset {other}, same board serial")), "asset {id}");
    }
    let detail = cmdb_server::service::assets::detail(&server.db, old).await.expect("detail");
    assert_eq!(detail.possible_duplicates.iter().map(|d| d.asset_id).collect::<Vec<_>>(), vec![new]);
    let file = cmdb_server::service::export::audit_assets_csv(
        &server.db,
        cmdb_server::service::time::AsOf::exact(chrono::Utc::now() + chrono::Duration::seconds(120)),
    )
    .await
    .expect("audit assets");
    let text = std::fs::read_to_string(file.path()).expect("csv");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().expect("headers").clone();
    let column = headers.iter().position(|h| h == "possible_duplicates").expect("column");
    let flagged: Vec<(String, String)> = reader
        .records()
        .map(|r| r.expect("row"))
        .filter(|r| !r[column].is_empty())
        .map(|r| (r[1].to_owned(), r[column].to_owned()))
        .collect();
    assert_eq!(flagged.len(), 2, "{flagged:?}");
    let expected = format!("{new} web-01-new.example (same board serial");
    assert!(
        flagged.iter().any(|(host, value)| host == "web-01.example" && value.starts_with(&expected)),
        "{flagged:?}"
    );
}

/// The asset record on the pages: custom fields as list columns (chosen, sorted), labels with a
/// barcode and a QR code (text escaped), the fields page, the duplicates page, and an admin's
/// merge that sends the merged record's page to the survivor.
async fn asset_record_pages(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = WebServer::start(&db).await;
    let a = server.ingest(&report("rec-a.example")).await;
    let b = server.ingest(&report("rec-b.example")).await;
    for (id, tag, cost) in [(a, "IT-A", "1299.5"), (b, "IT-<B>", "900")] {
        let patch = json!({"asset_tag": tag, "custom": {"purchase_cost": cost}});
        let patch = patch.as_object().expect("object");
        if let Err(e) = cmdb_server::service::assets::patch_business(&server.db, id, "user:admin", patch).await {
            // A tag with '<' is printable ASCII: accepted, and escaped wherever it is shown.
            panic!("patch {id}: {e}");
        }
    }
    let mut viewer = server.login("viewer").await;
    let list = viewer.get("/assets?cols=status,custom.purchase_cost&sort=-custom.purchase_cost").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains(">Purchase cost"), "the custom column is shown");
    let (first, second) = (list.body.find("rec-a.example").expect("a"), list.body.find("rec-b.example").expect("b"));
    assert!(first < second, "sorted by cost, descending");
    assert!(list.body.contains("<td class=\"custom\">1299.5</td>"), "its value in the row");
    let label = viewer.get(&format!("/assets/{b}/label.svg")).await;
    assert_eq!(label.status, 200);
    assert!(label.body.starts_with("<svg") && label.body.contains("IT-&lt;B&gt;") && !label.body.contains("IT-<B>"));
    let labels = viewer.get("/assets/labels?q=rec-").await;
    assert_eq!(labels.body.matches("<svg").count(), 2, "one label per listed asset");
    let fields = viewer.get("/fields").await;
    assert!(fields.status == 200 && fields.body.contains("purchase_cost") && !fields.body.contains("new-field"));
    let duplicates = viewer.get("/duplicates").await;
    assert!(duplicates.body.contains("MAC address 00:1c:42:a5:57:7a"), "the two share the fixture's MAC");
    // Only admins merge; a merged record's page is the survivor's.
    let csrf = viewer.csrf().await;
    let refused = viewer
        .post_form(&format!("/assets/{a}/record"), &[("csrf", &csrf), ("action", "merge"), ("from", &b.to_string())])
        .await;
    assert_eq!(refused.status, 403);
    let mut admin = server.login("admin").await;
    let csrf = admin.csrf().await;
    let merged = admin
        .post_form(&format!("/assets/{a}/record"), &[("csrf", &csrf), ("action", "merge"), ("from", &b.to_string())])
        .await;
    assert_eq!(merged.status, 303, "{}", merged.body);
    let gone = admin.get(&format!("/assets/{b}")).await;
    assert_eq!(gone.status, 303);
    let page = admin.get(&format!("/assets/{a}")).await.body;
    assert!(
        page.contains(&format!("asset {b} (rec-b.example) merged into this one")),
        "the merge is on the survivor's timeline"
    );
}

on_both_backends!(
    asset_record_pages,
    possible_duplicates_are_flagged_everywhere,
    readable_asset_page_and_change_log,
    managed_lists_constrain_the_edit_form,
    hostile_text_is_shown_as_text_everywhere,
    list_search_filters_sort_and_pages,
    dashboard_figures,
    business_edits_validation_and_concurrency,
    exports_and_the_as_of_view,
);

/// Static files are served from the binary with their hashes in the URLs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_are_embedded_and_cacheable() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = WebServer::start(&db).await;
    let mut client = server.client();
    let login = client.get("/login").await.body;
    for name in ["app.css", "app.js", "htmx.min.js"] {
        let marker = format!("&#x2f;static&#x2f;{name}?v=");
        let start = login.find(&marker).unwrap_or_else(|| panic!("{name} is linked: {login}"));
        let version: String = login[start + marker.len()..].chars().take_while(char::is_ascii_hexdigit).collect();
        assert_eq!(version.len(), 12);
        let file = client.get(&format!("/static/{name}?v={version}")).await;
        assert_eq!(file.status, 200);
        assert!(file.headers.get("cache-control").and_then(|v| v.to_str().ok()).unwrap_or("").contains("immutable"));
        assert!(file.body.len() > 500, "{name} has content");
    }
    assert_eq!(client.get("/static/../Cargo.toml").await.status, 404);
}

//! Exports on real databases: the list export holds exactly the filtered list, the audit CSVs hold
//! the as-of assets and the period's changes, and the XLSX files open in LibreOffice (converted
//! headless to CSV and read back). Also the CSV import and the managed lists.

mod common;

use std::path::Path;
use std::process::Command;

use chrono::Utc;
use cmdb_server::service::assets::{self, ListQuery};
use cmdb_server::service::export;
use common::{Backend, TestServer, report};
use serde_json::{Value, json};

async fn fleet(server: &TestServer) -> Vec<i64> {
    let mut ids = Vec::new();
    for (index, host) in ["web-01", "web-02", "db-01", "=cmd|calc"].iter().enumerate() {
        let id = server.accept(&report(host)).await["asset_id"].as_i64().expect("id");
        let owner = if index % 2 == 0 { "ops" } else { "dba" };
        let (status, body) = server
            .send_json(
                &server.admin,
                "PATCH",
                &format!("/api/v1/assets/{id}"),
                &json!({"owner": owner, "tags": ["a", "b"], "notes": "-rm"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        ids.push(id);
    }
    ids
}

async fn download(server: &TestServer, path: &str) -> (u16, String, Vec<u8>) {
    let response =
        server.http.get(format!("{}{path}", server.base)).bearer_auth(&server.viewer).send().await.expect("request");
    let status = response.status().as_u16();
    let kind = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    (status, kind, response.bytes().await.expect("body").to_vec())
}

fn read_csv(bytes: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_reader(bytes);
    let headers = reader.headers().expect("headers").iter().map(str::to_owned).collect();
    let rows = reader.records().map(|r| r.expect("record").iter().map(str::to_owned).collect()).collect();
    (headers, rows)
}

async fn list_export_is_the_filtered_list(backend: Backend) {
    let db = common::TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    fleet(&server).await;
    let query = ListQuery { owner: Some("ops".into()), ..ListQuery::default() };
    let live = assets::list(&server.state.db, &query).await.expect("list");
    assert_eq!(live.total, 2);
    let (status, kind, body) = download(&server, "/api/v1/export/assets.csv?owner=ops").await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/csv"), "{kind}");
    let (headers, rows) = read_csv(&body);
    assert_eq!(&headers[..export::list_headers().len()], export::list_headers());
    assert_eq!(headers.len(), export::list_headers().len() + 7, "and a column per custom field (the finance set)");
    assert_eq!(rows.len() as i64, live.total);
    for (row, item) in rows.iter().zip(&live.items) {
        assert_eq!(row[0], item.id.to_string());
        assert_eq!(row[1], csv_text(&item.hostname));
        let cell = |name: &str| &row[headers.iter().position(|h| h == name).expect(name)];
        assert_eq!(cell("owner"), "ops");
        assert_eq!(cell("tags"), "a,b");
        assert_eq!(cell("memory_mb"), "32768");
        assert_eq!(cell("ip_addresses"), "10.0.0.5", "link-local addresses are not listed");
    }
    // The formula-looking host name is defused.
    let (_, _, all) = download(&server, "/api/v1/export/assets.csv").await;
    let (_, rows) = read_csv(&all);
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().any(|r| r[1] == "'=cmd|calc"), "{rows:?}");
    // As of before anything existed: just the header.
    let (status, _, empty) = download(&server, "/api/v1/export/assets.csv?as_of=2020-01-01").await;
    assert_eq!(status, 200);
    assert_eq!(read_csv(&empty).1.len(), 0);
    let (status, kind, xlsx) = download(&server, "/api/v1/export/assets.xlsx?owner=dba").await;
    assert_eq!(status, 200);
    assert!(kind.contains("spreadsheetml"), "{kind}");
    assert!(xlsx.starts_with(b"PK"), "an XLSX is a zip");
    let sheets = libreoffice_csv(&xlsx);
    let (headers, rows) = &sheets[0].1;
    let fixed = xlsx_headers(export::list_headers());
    assert_eq!(&headers[..fixed.len()], &fixed[..]);
    assert_eq!(headers.last().map(String::as_str), Some("disposed_at"), "a custom date is no time column");
    assert_eq!(rows.len(), 2);
    let owner = headers.iter().position(|h| h == "owner").expect("owner");
    assert!(rows.iter().all(|r| r[owner] == "dba"), "{rows:?}");
    let memory = headers.iter().position(|h| h == "memory_mb").expect("memory");
    assert!(rows.iter().all(|r| r[memory] == "32768"), "{rows:?}");
}

fn csv_text(text: &str) -> String {
    export::csv_text(text)
}

/// Makes sure LibreOffice Calc is installed (CI runs as root on this machine).
fn soffice() -> &'static str {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        if Command::new("soffice").arg("--version").output().is_ok_and(|o| o.status.success()) {
            return;
        }
        let env = [("DEBIAN_FRONTEND", "noninteractive")];
        let _ = Command::new("apt-get").arg("update").envs(env).status();
        for package in ["libreoffice-calc-nogui", "libreoffice-calc"] {
            let ok = Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", package])
                .envs(env)
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
        }
    });
    "soffice"
}

/// Converts every sheet of `xlsx` to CSV with headless LibreOffice and reads them back, in
/// sheet order: (sheet file name, (headers, rows)).
/// A sheet read back: its file name, its header and its rows.
type Sheet = (String, (Vec<String>, Vec<Vec<String>>));

fn libreoffice_csv(xlsx: &[u8]) -> Vec<Sheet> {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("book.xlsx");
    std::fs::write(&input, xlsx).expect("write");
    // One LibreOffice at a time: two first starts at once (the SQLite and PostgreSQL halves run in
    // parallel) crashed soffice itself once in CI ("Unspecified Application Error"), before it read
    // the file. A crash of soffice on start is retried once, each time with a fresh profile; a
    // conversion that runs and fails is not.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let convert = |attempt: u32| {
        let profile = format!("file://{}", dir.path().join(format!("profile-{attempt}")).display());
        // Token 12 = -1: every sheet to its own file (book-SheetName.csv); UTF-8 (76), comma, quote.
        Command::new(soffice())
            .arg(format!("-env:UserInstallation={profile}"))
            .args([
                "--headless",
                "--convert-to",
                "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,-1",
            ])
            .arg("--outdir")
            .arg(dir.path())
            .arg(&input)
            .output()
            .expect("LibreOffice runs")
    };
    let mut output = convert(1);
    if !output.status.success() && String::from_utf8_lossy(&output.stderr).contains("Unspecified Application Error") {
        eprintln!("soffice crashed on start; once more: {}", String::from_utf8_lossy(&output.stderr));
        output = convert(2);
    }
    assert!(output.status.success(), "soffice failed: {}", String::from_utf8_lossy(&output.stderr));
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "LibreOffice wrote no CSV: {}", String::from_utf8_lossy(&output.stderr));
    files.iter().map(|p| (name(p), read_csv(&std::fs::read(p).expect("read")))).collect()
}

/// Headers as the XLSX names them: time columns (`*_at`) name the zone their wall-clock times are in.
fn xlsx_headers(headers: &[&str]) -> Vec<String> {
    headers.iter().map(|h| if h.ends_with("_at") { format!("{h} (UTC)") } else { (*h).to_owned() }).collect()
}

fn name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The audit workbook as a spreadsheet reads it: counts and sizes are numbers, flags are booleans,
/// times are date-times, and every table sheet has a frozen header row and an autofilter.
fn assert_typed_workbook(xlsx: &[u8], hosts: usize, digest: &str) {
    use calamine::{Data, Reader, Xlsx, open_workbook_from_rs};
    use std::io::{Cursor, Read};
    let mut book: Xlsx<_> = open_workbook_from_rs(Cursor::new(xlsx.to_vec())).expect("xlsx");
    let names = book.sheet_names();
    assert_eq!(names, ["About", "Assets", "Memory", "Disks", "Network interfaces", "Changes"]);
    let about = book.worksheet_range("About").expect("About");
    let value = |label: &str| about.rows().find(|r| r[0] == label).map(|r| r[1].clone());
    assert_eq!(value("Assets"), Some(Data::Float(hosts as f64)), "counts are numbers");
    assert_eq!(value("Components"), Some(Data::Float((hosts * 5) as f64)));
    assert!(matches!(value("History starts"), Some(Data::String(s)) if s.contains("+00:00")), "{about:?}");
    assert_eq!(value("Time zone"), Some(Data::String("UTC".into())));
    // The history digest an auditor keeps, and the command that checks it later.
    assert_eq!(value("History digest"), Some(Data::String(digest.to_owned())));
    assert_eq!(value("Change chains in the digest"), Some(Data::Float(hosts as f64)));
    assert!(
        matches!(value("Verify the history behind this workbook"), Some(Data::String(s)) if s.starts_with("cmdb-server verify --as-of ") && s.ends_with(digest)),
        "{about:?}"
    );
    let mut cell = |sheet: &str, row_key: &str, header: &str| -> Data {
        let range = book.worksheet_range(sheet).expect(sheet);
        let mut rows = range.rows();
        let headers: Vec<String> = rows.next().expect("header").iter().map(|c| c.to_string()).collect();
        let col = headers.iter().position(|h| h == header).unwrap_or_else(|| panic!("{header} in {headers:?}"));
        rows.find(|r| r.iter().any(|c| c == row_key)).map(|r| r[col].clone()).expect(row_key)
    };
    assert_eq!(cell("Disks", "D1", "Capacity (GB)"), Data::Float(300.0));
    assert_eq!(cell("Disks", "D1", "Capacity (bytes)"), Data::Float(299_999_999_000.0));
    assert_eq!(cell("Memory", "M1", "Size (GiB)"), Data::Float(16.0));
    assert_eq!(cell("Memory", "M1", "Speed (MT/s)"), Data::Float(2133.0));
    assert_eq!(cell("Network interfaces", "eth0", "Up"), Data::Bool(true));
    assert_eq!(cell("Network interfaces", "eth0", "IPv4"), Data::String("10.0.0.5/24".into()));
    assert!(matches!(cell("Assets", "web-01", "created_at (UTC)"), Data::DateTime(_)));
    assert!(matches!(cell("Assets", "web-01", "memory_mb"), Data::Float(_)));
    // Frozen header rows and autofilters live in each sheet's XML, which calamine does not read.
    let mut zip = zip::ZipArchive::new(Cursor::new(xlsx)).expect("zip");
    for index in 2..=names.len() {
        let mut xml = String::new();
        zip.by_name(&format!("xl/worksheets/sheet{index}.xml"))
            .expect("sheet xml")
            .read_to_string(&mut xml)
            .expect("utf-8");
        assert!(
            xml.contains(r#"<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>"#),
            "sheet {index}: frozen header"
        );
        assert!(xml.contains("<autoFilter ref=\"A1:"), "sheet {index}: autofilter");
        // Columns are as wide as their headers (at least 12 characters), not Excel's default 8.43.
        assert!(xml.contains("<cols><col min=\"1\""), "sheet {index}: column widths");
        assert!(!xml.contains("width=\"8.") && xml.contains("customWidth=\"1\""), "sheet {index}: column widths");
    }
}

async fn audit_workbook_opens_in_libreoffice(backend: Backend) {
    let db = common::TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let before = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let ids = fleet(&server).await;
    // As if written an hour ago: an as-of reads at the latest 120 s before now.
    common::age_history(&server.state.db, 3600).await;
    let before = before - chrono::Duration::hours(1);
    let as_of = (Utc::now() - chrono::Duration::minutes(10)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (status, kind, xlsx) = download(&server, &format!("/api/v1/audit/export.xlsx?as_of={as_of}")).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&xlsx));
    assert!(kind.contains("spreadsheetml"));
    let (status, digest) = server.get(&format!("/api/v1/audit/digest?as_of={as_of}")).await;
    assert_eq!(status, 200, "{digest}");
    assert_typed_workbook(&xlsx, ids.len(), digest["digest"].as_str().expect("digest"));
    // The audit CSVs carry it in their headers.
    let response = server
        .http
        .get(format!("{}/api/v1/audit/assets.csv?as_of={as_of}", server.base))
        .bearer_auth(&server.viewer)
        .send()
        .await
        .expect("request");
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(header("x-cmdb-history-digest").as_deref(), digest["digest"].as_str());
    assert_eq!(header("x-cmdb-history-digest-as-of").as_deref(), digest["as_of"]["at"].as_str());
    let sheets = libreoffice_csv(&xlsx);
    let names: Vec<&str> = sheets.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "book-About.csv",
            "book-Assets.csv",
            "book-Changes.csv",
            "book-Disks.csv",
            "book-Memory.csv",
            "book-Network interfaces.csv"
        ]
    );
    let sheet = |n: &str| &sheets.iter().find(|(name, _)| name == n).expect("sheet").1;
    let (headers, assets) = sheet("book-Assets.csv");
    let fixed = xlsx_headers(export::AUDIT_ASSET_HEADERS);
    assert_eq!(&headers[..fixed.len()], &fixed[..]);
    assert_eq!(
        &headers[fixed.len()..],
        ["purchase_date", "purchase_cost", "currency", "supplier", "purchase_order", "warranty_end", "disposed_at"],
        "then the custom fields by key"
    );
    assert_eq!(assets.len(), ids.len());
    let web = assets.iter().find(|r| r[1] == "web-01").expect("web-01 row");
    let cell = |name: &str| &web[headers.iter().position(|h| h.starts_with(name)).expect(name)];
    assert_eq!(cell("owner"), "ops");
    assert_eq!(cell("notes"), "-rm", "text that looks like a formula stays text in XLSX");
    assert_eq!(cell("cpu_count"), "8");
    assert_eq!(cell("memory_mb"), "32768");
    assert_eq!(cell("disk_bytes"), "599999998000");
    // Times are date cells shown as yyyy-mm-dd hh:mm:ss (UTC).
    assert_eq!(cell("created_at").len(), 19, "{}", cell("created_at"));
    assert!(assets.iter().any(|r| r[1] == "=cmd|calc"));
    // One sheet per component section, a column per field: each host has 2 DIMMs, 2 disks, 1 NIC.
    let column = |headers: &[String], name: &str| headers.iter().position(|h| h == name).expect(name);
    let (headers, disks) = sheet("book-Disks.csv");
    assert_eq!(disks.len(), ids.len() * 2);
    let disk = disks.iter().find(|r| r[1] == "web-01" && r[2] == "32:1").expect("disk 32:1 of web-01");
    assert_eq!(disk[column(headers, "Serial number")], "D1");
    assert_eq!(disk[column(headers, "Capacity (GB)")], "300");
    assert_eq!(disk[column(headers, "Capacity (bytes)")], "299999999000");
    let (headers, dimms) = sheet("book-Memory.csv");
    assert_eq!(dimms.len(), ids.len() * 2);
    assert_eq!(dimms[0][column(headers, "Size (GiB)")], "16");
    let (headers, nics) = sheet("book-Network interfaces.csv");
    assert_eq!(nics.len(), ids.len());
    assert_eq!(nics[0][column(headers, "MAC address")], "00:1c:42:a5:57:7a");
    assert!(!headers.iter().any(|h| h.contains("erial")), "no serial column holds a MAC: {headers:?}");
    let (headers, changes) = sheet("book-Changes.csv");
    assert_eq!(headers, &xlsx_headers(export::CHANGE_HEADERS));
    let mut expected = 0;
    for id in &ids {
        expected += server.changes(*id).await.len();
    }
    assert_eq!(changes.len(), expected, "every change of the period");
    assert!(changes.iter().any(|r| r[5] == "user:test-admin" && r[9] == "/owner"));
    let (_, about) = sheet("book-About.csv");
    assert!(about.iter().any(|r| r[0] == "Assets" && r[1] == ids.len().to_string()), "{about:?}");

    // The CSV variants agree with the workbook.
    let (status, _, body) = download(&server, &format!("/api/v1/audit/assets.csv?as_of={as_of}")).await;
    assert_eq!(status, 200);
    assert_eq!(read_csv(&body).1.len(), ids.len());
    let (status, _, body) = download(&server, &format!("/api/v1/audit/components.csv?as_of={as_of}")).await;
    assert_eq!(status, 200);
    assert_eq!(read_csv(&body).1.len(), ids.len() * 5);
    let (status, _, body) = download(&server, &format!("/api/v1/audit/changes.csv?as_of={as_of}")).await;
    assert_eq!(status, 200);
    assert_eq!(read_csv(&body).1.len(), expected);
    let from = before.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (status, _, body) =
        download(&server, &format!("/api/v1/audit/changes.csv?as_of={as_of}&from={as_of}&to={as_of}")).await;
    assert_eq!(status, 200);
    assert_eq!(read_csv(&body).1.len(), 0, "an empty period has no changes");
    let (status, _, _) =
        download(&server, &format!("/api/v1/audit/changes.csv?as_of={as_of}&from={as_of}&to={from}")).await;
    assert_eq!(status, 422, "from after to");
    let (status, _, _) = download(&server, "/api/v1/audit/export.xlsx").await;
    assert_eq!(status, 400, "as_of is required");
}

async fn post_csv(server: &TestServer, token: &str, dry_run: bool, body: &str) -> (u16, Value) {
    let response = server
        .http
        .post(format!("{}/api/v1/import/csv?dry_run={dry_run}", server.base))
        .bearer_auth(token)
        .header("content-type", "text/csv")
        .body(body.to_owned())
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn change_count(server: &TestServer) -> usize {
    let (status, body) = server.get("/api/v1/changes?limit=1000").await;
    assert_eq!(status, 200);
    body["items"].as_array().map_or(0, Vec::len)
}

async fn csv_import_is_all_or_nothing(backend: Backend) {
    let db = common::TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let web = server.accept(&report("web-01")).await["asset_id"].as_i64().expect("id");
    let (status, body) = server.send_json(&server.admin, "POST", "/api/v1/lists/idc", &json!({"value": "DC-1"})).await;
    assert_eq!(status, 201, "{body}");
    let before = change_count(&server).await;

    let bad = "hostname,owner,idc,ssh_port,status\n\
               web-01,ops,DC-1,22,online\n\
               new-01,ops,DC-9,22,\n\
               new-02,ops,DC-1,99999,racked\n\
               new-03,,DC-1,,gone\n\
               new-04,ops,,,\n";
    let (status, report) = post_csv(&server, &server.admin, true, bad).await;
    assert_eq!(status, 200, "a dry run answers with its findings: {report}");
    let lines: Vec<(i64, &str)> = report["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| (e["line"].as_i64().unwrap_or(0), e["column"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(lines, vec![(3, "idc"), (4, "ssh_port"), (5, "status")], "{report}");
    let (status, report) = post_csv(&server, &server.admin, false, bad).await;
    assert_eq!(status, 422, "{report}");
    assert_eq!(report["applied"], false);
    assert_eq!(change_count(&server).await, before, "one bad line applies nothing");
    assert_eq!(assets::list(&server.state.db, &ListQuery::default()).await.expect("list").total, 1);

    let good = "hostname,owner,idc,tags,ssh_port\nweb-01,ops,DC-1,\"web,prod\",2222\nnew-01,dba,DC-1,,\nnew-02,,,,\n";
    let (status, report) = post_csv(&server, &server.viewer, false, good).await;
    assert_eq!(status, 403, "importing needs the editor role: {report}");
    let (status, report) = post_csv(&server, &server.admin, true, good).await;
    assert_eq!(status, 200, "{report}");
    let actions: Vec<&str> =
        report["results"].as_array().expect("results").iter().filter_map(|r| r["action"].as_str()).collect();
    assert_eq!(actions, vec!["update", "create", "create"]);
    assert_eq!(change_count(&server).await, before, "a dry run writes nothing");
    let (status, report) = post_csv(&server, &server.admin, false, good).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["applied"], true);
    let detail = server.asset(web).await;
    assert_eq!(detail["business"]["owner"], "ops");
    assert_eq!(detail["business"]["ssh_port"], 2222);
    assert_eq!(detail["tags"], json!(["prod", "web"]));
    let edits: Vec<Value> =
        server.changes(web).await.into_iter().filter(|c| c["section"] == "business").skip(1).collect();
    assert!(!edits.is_empty());
    assert!(edits.iter().all(|c| c["source"] == "user:test-admin"), "{edits:?}");
    let created = report["results"][1]["asset_id"].as_i64().expect("created id");
    let created = server.asset(created).await;
    assert_eq!(created["hostname"], "new-01");
    assert_eq!(created["owner"], "dba");
    assert_eq!(created["status"], "racked");
    // Importing the same file again changes nothing.
    let (status, report) = post_csv(&server, &server.admin, false, good).await;
    assert_eq!(status, 200, "{report}");
    let actions: Vec<&str> =
        report["results"].as_array().expect("results").iter().filter_map(|r| r["action"].as_str()).collect();
    assert_eq!(actions, vec!["unchanged", "unchanged", "unchanged"]);
    // An exported list imports back unchanged (read-only columns are ignored).
    let (_, _, exported) = download(&server, "/api/v1/export/assets.csv").await;
    let (status, report) = post_csv(&server, &server.admin, true, &String::from_utf8(exported).expect("utf-8")).await;
    assert_eq!(status, 200, "{report}");
    assert!(report["errors"].as_array().is_some_and(Vec::is_empty), "{report}");
    assert!(report["results"].as_array().expect("results").iter().all(|r| r["action"] == "unchanged"), "{report}");
    let response = server
        .http
        .post(format!("{}/api/v1/import/csv", server.base))
        .bearer_auth(&server.admin)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 415);
}

async fn managed_lists(backend: Backend) {
    let db = common::TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let id = server.accept(&report("web-01")).await["asset_id"].as_i64().expect("id");
    let (status, body) = server
        .send_json(&server.admin, "POST", "/api/v1/lists/tag", &json!({"value": " prod ", "description": "production"}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["value"], "prod");
    let (status, _) = server.send_json(&server.admin, "POST", "/api/v1/lists/tag", &json!({"value": "prod"})).await;
    assert_eq!(status, 409);
    let (status, _) = server.send_json(&server.admin, "POST", "/api/v1/lists/tag", &json!({"value": "a,b"})).await;
    assert_eq!(status, 422);
    let (status, _) = server.send_json(&server.admin, "POST", "/api/v1/lists/colour", &json!({"value": "red"})).await;
    assert_eq!(status, 404);
    let (status, _) = server.send_json(&server.viewer, "POST", "/api/v1/lists/idc", &json!({"value": "DC-1"})).await;
    assert_eq!(status, 403);
    let (status, body) =
        server.send_json(&server.admin, "PATCH", &format!("/api/v1/assets/{id}"), &json!({"tags": ["prod"]})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.get_as(&server.viewer, "/api/v1/lists").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tag"][0]["value"], "prod");
    assert_eq!(body["tag"][0]["assets"], 1);
    assert_eq!(body["idc"], json!([]));
    let (status, _) = server.send_json(&server.admin, "DELETE", "/api/v1/lists/tag/prod", &json!(null)).await;
    assert_eq!(status, 409, "in use");
    let (status, _) =
        server.send_json(&server.admin, "PATCH", "/api/v1/lists/tag/prod", &json!({"description": "live"})).await;
    assert_eq!(status, 204);
    let (status, body) =
        server.send_json(&server.admin, "PATCH", &format!("/api/v1/assets/{id}"), &json!({"tags": null})).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = server.send_json(&server.viewer, "DELETE", "/api/v1/lists/tag/prod", &json!(null)).await;
    assert_eq!(status, 403);
    let (status, _) = server.send_json(&server.admin, "DELETE", "/api/v1/lists/tag/prod", &json!(null)).await;
    assert_eq!(status, 204);
    let (_, body) = server.get("/api/v1/lists/tag").await;
    assert_eq!(body["items"], json!([]));
}

on_both_backends!(
    list_export_is_the_filtered_list,
    audit_workbook_opens_in_libreoffice,
    csv_import_is_all_or_nothing,
    managed_lists
);

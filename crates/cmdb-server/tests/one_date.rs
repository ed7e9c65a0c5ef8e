//! One meaning of a date everywhere: for the same `as_of=DATE`, the UI list, the REST lists, the
//! CSV exports and the XLSX workbooks hold the same assets and state the same instant, the end of
//! DATE in the configured zone. Run with Asia/Shanghai and with UTC: a host recorded at 20:00 UTC
//! on DATE belongs to DATE in UTC and to the next day in Shanghai.

mod common;
mod web_support;

use std::collections::BTreeSet;
use std::io::Cursor;

use calamine::{Data, DataType, Reader, Xlsx, open_workbook_from_rs};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use common::{Backend, TestDb, record_asset_at, report, test_config};
use serde_json::Value;
use web_support::WebServer;

fn names(items: &Value) -> BTreeSet<String> {
    items.as_array().expect("items").iter().map(|i| i["hostname"].as_str().expect("hostname").to_owned()).collect()
}

fn csv_names(text: &str, column: &str) -> BTreeSet<String> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().expect("headers").clone();
    let index = headers.iter().position(|h| h == column).expect("hostname column");
    reader.records().map(|r| r.expect("record")[index].to_owned()).collect()
}

fn sheet(bytes: &[u8], name: &str) -> calamine::Range<Data> {
    let mut book: Xlsx<_> = open_workbook_from_rs(Cursor::new(bytes.to_vec())).expect("xlsx");
    book.worksheet_range(name).expect("sheet")
}

fn xlsx_names(bytes: &[u8], sheet_name: &str) -> BTreeSet<String> {
    let range = sheet(bytes, sheet_name);
    let mut rows = range.rows();
    let header = rows.next().expect("header");
    let index = header.iter().position(|c| *c == "hostname").expect("hostname column");
    rows.map(|r| r[index].to_string()).collect()
}

fn about(bytes: &[u8], label: &str) -> String {
    let range = sheet(bytes, "About");
    range.rows().find(|r| r[0] == label).map(|r| r[1].to_string()).unwrap_or_default()
}

async fn one_date_for(backend: Backend, zone: &str) {
    let test_db = TestDb::new(backend).await;
    let mut config = test_config(&test_db);
    config.timezone = zone.to_owned();
    let tz: chrono_tz::Tz = zone.parse().expect("zone");
    let server = WebServer::start_with(&test_db, config).await;
    let token = cmdb_server::auth::create_token(server.db.writer(), "dates", cmdb_server::auth::Role::Viewer)
        .await
        .expect("token");
    let day: NaiveDate = Utc::now().date_naive() - chrono::Duration::days(10);
    let utc = |h: u32| -> DateTime<Utc> { Utc.from_utc_datetime(&day.and_hms_opt(h, 0, 0).expect("time")) };
    let early = server.ingest(&report("early.example.com")).await;
    let late = server.ingest(&report("late.example.com")).await;
    record_asset_at(&server.db, early, utc(2)).await;
    record_asset_at(&server.db, late, utc(20)).await;
    // 20:00 UTC is already the next day in Shanghai (04:00 +08:00).
    let expected: BTreeSet<String> = if zone == "UTC" {
        ["early.example.com", "late.example.com"].map(str::to_owned).into()
    } else {
        ["early.example.com"].map(str::to_owned).into()
    };
    let end_of_day = tz
        .from_local_datetime(&day.succ_opt().expect("next").and_hms_opt(0, 0, 0).expect("midnight"))
        .earliest()
        .expect("midnight exists")
        .with_timezone(&Utc)
        - chrono::Duration::microseconds(1);
    let stated = end_of_day.with_timezone(&tz).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false);
    let stamp = end_of_day.with_timezone(&tz).format("%Y%m%dT%H%M%S%z").to_string();
    let q = format!("as_of={day}");
    let http = reqwest::Client::new();
    let get = |path: String| {
        let request = http.get(format!("{}{path}", server.base)).bearer_auth(&token);
        async move {
            let response = request.send().await.expect("request");
            assert_eq!(response.status(), 200, "{path}");
            let name =
                response.headers().get("content-disposition").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            (name, response.bytes().await.expect("body").to_vec())
        }
    };

    // The REST lists state the instant with its offset.
    for path in [format!("/api/v1/assets?{q}"), format!("/api/v1/audit/assets?{q}")] {
        let (_, body) = get(path.clone()).await;
        let page: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(names(&page["items"]), expected, "{zone} {path}");
        assert_eq!(page["as_of"]["at"], stated.as_str(), "{zone} {path}");
        assert_eq!(page["as_of"]["timezone"], zone, "{zone} {path}");
    }
    // The UI list: the same hosts, and the banner states the same instant.
    let mut viewer = server.login("viewer").await;
    let page = viewer.get(&format!("/assets?{q}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    for host in ["early.example.com", "late.example.com"] {
        assert_eq!(page.body.contains(host), expected.contains(host), "{zone}: UI list and {host}");
    }
    let banner = end_of_day.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %:z").to_string();
    assert!(page.body.contains(&banner), "{zone}: the banner states {banner}");
    // CSV: the UI's and the API's list exports, and the audit CSV.
    let ui_csv = viewer.get(&format!("/assets/export.csv?{q}")).await;
    assert_eq!(csv_names(&ui_csv.body, "hostname"), expected, "{zone} UI CSV");
    let (_, api_csv) = get(format!("/api/v1/export/assets.csv?{q}")).await;
    assert_eq!(csv_names(&String::from_utf8(api_csv).expect("utf-8"), "hostname"), expected, "{zone} API CSV");
    let (_, audit_csv) = get(format!("/api/v1/audit/assets.csv?{q}")).await;
    let audit_csv = String::from_utf8(audit_csv).expect("utf-8");
    assert_eq!(csv_names(&audit_csv, "hostname"), expected, "{zone} audit CSV");
    // CSV times carry the zone's offset.
    let offset = end_of_day.with_timezone(&tz).format("%:z").to_string();
    let offset = if offset == "+00:00" { "Z".to_owned() } else { offset };
    assert!(audit_csv.lines().nth(1).expect("a row").contains(&offset), "{zone}: {audit_csv}");
    // XLSX: the list export and both audit workbooks.
    let (_, list_xlsx) = get(format!("/api/v1/export/assets.xlsx?{q}")).await;
    assert_eq!(xlsx_names(&list_xlsx, "Assets"), expected, "{zone} list XLSX");
    let (api_name, api_book) = get(format!("/api/v1/audit/export.xlsx?{q}")).await;
    let ui_book = viewer.get(&format!("/assets/audit.xlsx?{q}")).await;
    let ui_name = ui_book.headers.get("content-disposition").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(api_name, format!("attachment; filename=\"cmdb-audit-{stamp}.xlsx\""), "{zone}");
    assert_eq!(ui_name, api_name, "{zone}: the UI and the API name the workbook alike");
    let ui_bytes = {
        let response = reqwest::Client::new()
            .get(format!("{}/assets/audit.xlsx?{q}", server.base))
            .header("cookie", viewer.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; "))
            .send()
            .await
            .expect("request");
        response.bytes().await.expect("body").to_vec()
    };
    for (what, book) in [("API", &api_book), ("UI", &ui_bytes)] {
        assert_eq!(xlsx_names(book, "Assets"), expected, "{zone} {what} workbook");
        assert_eq!(about(book, "Assets and components as of"), stated, "{zone} {what} workbook");
        assert_eq!(about(book, "Time zone"), zone, "{zone} {what} workbook");
        // Date-time cells are wall-clock times of the zone, which the header names.
        let range = sheet(book, "Assets");
        let header: Vec<String> = range.rows().next().expect("header").iter().map(|c| c.to_string()).collect();
        let created = header.iter().position(|h| h == &format!("created_at ({zone})")).expect("created_at header");
        let row = range.rows().nth(1).expect("a row");
        let early_local = utc(2).with_timezone(&tz).naive_local();
        assert_eq!(row[created].as_datetime(), Some(early_local), "{zone} {what}: created_at in the zone");
    }
    // The audit log names the same action for both.
    let actions: Vec<String> = sqlx::query_scalar("SELECT action FROM audit_log WHERE action LIKE 'export.audit%'")
        .fetch_all(server.db.reader())
        .await
        .expect("audit log");
    assert!(actions.len() >= 3 && actions.iter().all(|a| a == "export.audit"), "{actions:?}");
}

async fn same_date_same_answer_shanghai(backend: Backend) {
    one_date_for(backend, "Asia/Shanghai").await;
}

async fn same_date_same_answer_utc(backend: Backend) {
    one_date_for(backend, "UTC").await;
}

on_both_backends!(same_date_same_answer_shanghai, same_date_same_answer_utc);

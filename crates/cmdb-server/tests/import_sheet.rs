//! Importing the old spreadsheet: XLSX as LibreOffice writes it (a committed file) and as
//! rust_xlsxwriter writes it, columns by key or label, rows matched by id, asset tag, serial and
//! host name, custom values in their accepted forms, and a baseline: the sheet as the state on a
//! past date, read by the as-of view until each asset's first recorded change.

mod common;

use chrono::{Duration, Utc};
use cmdb_server::service::asof;
use cmdb_server::service::assets::ListQuery;
use cmdb_server::service::time::AsOf;
use common::{Backend, TestDb, TestServer, report};
use serde_json::{Value, json};
use sqlx::Row;

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
/// Written by LibreOffice 7 from tests/data/old-inventory.csv (dates are date cells).
const LIBREOFFICE_XLSX: &[u8] = include_bytes!("data/old-inventory-libreoffice.xlsx");

async fn post(server: &TestServer, token: &str, query: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let response = server
        .http
        .post(format!("{}/api/v1/import{query}", server.base))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("import");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn actions(report: &Value) -> Vec<(String, String)> {
    report["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| (r["hostname"].as_str().unwrap_or("").to_owned(), r["action"].as_str().unwrap_or("").to_owned()))
        .collect()
}

/// The LibreOffice workbook: labels for headers, date cells, a number for the cost; a dry run
/// says what each row would do, the real run applies all of it.
async fn libreoffice_workbook_imports_by_label(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    // web-01 reports: the sheet's serial finds it. db-01's serial in the sheet is an old one, so
    // its host name finds it.
    let web = server.accept(&report("web-01.example")).await["asset_id"].as_i64().expect("web");
    let db01 = server.accept(&report("db-01.example")).await["asset_id"].as_i64().expect("db");
    let (status, dry) = post(&server, &server.admin, "", XLSX, LIBREOFFICE_XLSX.to_vec()).await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["dry_run"], true, "a dry run by default");
    assert_eq!(dry["errors"], json!([]), "{dry}");
    assert_eq!(
        actions(&dry),
        [
            ("web-01.example".into(), "update".into()),
            ("db-01.example".into(), "update".into()),
            ("legacy-nas".into(), "create".into())
        ]
    );
    assert_eq!(server.asset(web).await["business"]["custom"], Value::Null, "a dry run writes nothing");
    let (status, done) = post(&server, &server.admin, "?dry_run=false", XLSX, LIBREOFFICE_XLSX.to_vec()).await;
    assert_eq!(status, 200, "{done}");
    let web_asset = server.asset(web).await;
    assert_eq!(web_asset["asset_tag"], "IT-2019-0001");
    assert_eq!(web_asset["owner"], "ops");
    assert_eq!(
        web_asset["business"]["custom"],
        json!({"purchase_date": "2019-03-01", "purchase_cost": "12999.5", "supplier": "Acme", "warranty_end": "2024-02-29"})
    );
    assert_eq!(server.asset(db01).await["business"]["custom"]["purchase_cost"], "23999", "a whole number stays whole");
    let (_, nas) = server.get("/api/v1/assets?asset_tag=IT-2015-0107").await;
    assert_eq!(nas["items"][0]["hostname"], "legacy-nas", "{nas}");
    // Applied as the importer: change records with source user:<name>.
    let changes = server.changes(web).await;
    assert!(changes.iter().any(|c| c["source"] == "user:test-admin" && c["path"] == "/asset_tag"), "{changes:?}");
    common::assert_every_history_rebuilds_its_state(server.db()).await;
}

/// A workbook rust_xlsxwriter writes: date cells in a day-first display format, numbers, an
/// error cell, and rows that match nothing or several assets.
async fn cell_errors_and_matching(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let a = server.accept(&report("match-a")).await["asset_id"].as_i64().expect("a");
    let (status, _) =
        server.send_json(&server.admin, "PATCH", &format!("/api/v1/assets/{a}"), &json!({"asset_tag": "T-1"})).await;
    assert_eq!(status, 200);
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    let day_first = rust_xlsxwriter::Format::new().set_num_format("dd/mm/yyyy");
    for (col, header) in ["asset_tag", "purchase_date", "purchase_cost", "warranty_end", "owner"].iter().enumerate() {
        sheet.write_string(0, col as u16, *header).expect("header");
    }
    // Row 2: found by tag; a date cell shown day-first is still 2024-03-01; a float cost.
    sheet.write_string(1, 0, "T-1").expect("cell");
    let date = rust_xlsxwriter::ExcelDateTime::from_ymd(2024, 3, 1).expect("date");
    sheet.write_datetime_with_format(1, 1, &date, &day_first).expect("cell");
    sheet.write_number(1, 2, 1299.5).expect("cell");
    sheet.write_string(1, 3, "2027/1/31").expect("cell");
    sheet.write_string(1, 4, "ops").expect("cell");
    // Row 3: a tag nothing has and no host name: unmatched. A date typed as text day-first: an
    // error naming the field and the accepted forms.
    sheet.write_string(2, 0, "T-404").expect("cell");
    sheet.write_string(2, 1, "01/03/2024").expect("cell");
    let bytes = book.save_to_buffer().expect("xlsx");
    let (status, report) = post(&server, &server.admin, "?dry_run=false", XLSX, bytes).await;
    assert_eq!(status, 422, "one bad cell: nothing applied: {report}");
    let errors = report["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{report}");
    assert_eq!(errors[0]["line"], 3);
    assert_eq!(errors[0]["column"], "purchase_date");
    assert!(errors[0]["message"].as_str().unwrap_or("").contains("YYYY-MM-DD"), "{report}");
    assert_eq!(server.asset(a).await["owner"], Value::Null, "nothing applied");
    // Without the bad row, the good one applies and the unmatched one is reported.
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    for (col, header) in ["Asset tag", "Purchase date", "Purchase cost"].iter().enumerate() {
        sheet.write_string(0, col as u16, *header).expect("header");
    }
    sheet.write_string(1, 0, "T-1").expect("cell");
    sheet.write_datetime_with_format(1, 1, &date, &day_first).expect("cell");
    sheet.write_number(1, 2, 1299.5).expect("cell");
    sheet.write_string(2, 0, "T-404").expect("cell");
    let (status, report) =
        post(&server, &server.admin, "?dry_run=false", XLSX, book.save_to_buffer().expect("xlsx")).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(actions(&report), [("match-a".into(), "update".into()), ("".into(), "unmatched".into())]);
    assert_eq!(
        server.asset(a).await["business"]["custom"],
        json!({"purchase_date": "2024-03-01", "purchase_cost": "1299.5"})
    );
    // Two live assets with one host name: a cell error, not a guess.
    let b = server.send_json(&server.admin, "POST", "/api/v1/assets", &json!({"hostname": "twin"})).await.1["id"]
        .as_i64()
        .expect("b");
    sqlx::query("UPDATE assets SET status = 'offline' WHERE id = $1")
        .bind(b)
        .execute(server.db().writer())
        .await
        .expect("status");
    let c = common::report("twin-2");
    let c = server.accept(&c).await["asset_id"].as_i64().expect("c");
    sqlx::query("UPDATE assets SET hostname = 'twin' WHERE id = $1")
        .bind(c)
        .execute(server.db().writer())
        .await
        .expect("rename");
    let (status, report) = post(&server, &server.admin, "", "text/csv", b"hostname,owner\ntwin,ops\n".to_vec()).await;
    assert_eq!(status, 200);
    assert_eq!(report["errors"][0]["column"], "hostname", "{report}");
    assert!(report["errors"][0]["message"].as_str().unwrap_or("").contains("2 assets"), "{report}");
    // The old path still answers.
    let response = server
        .http
        .post(format!("{}/api/v1/import/csv", server.base))
        .bearer_auth(&server.admin)
        .header("content-type", "text/csv")
        .body("hostname,owner\nmatch-a,ops\n")
        .send()
        .await
        .expect("alias");
    assert_eq!(response.status().as_u16(), 200);
}

/// A baseline: the sheet as the state on 1 January. No back-dated change is written; as of a
/// date before an asset's first change it reads as the sheet, after it as recorded. A row for an
/// asset with history by then is refused, and only admins import baselines.
async fn baseline_as_of(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    // web-01 has reported (its history starts now); the baseline date is before that.
    let web = server.accept(&report("web-01.example")).await["asset_id"].as_i64().expect("web");
    let jan1 = (Utc::now() - Duration::days(30)).format("%Y-%m-%d").to_string();
    let query = format!("?as_of={jan1}&file_name=inventory-2026.xlsx");
    let (status, body) = post(&server, &server.viewer, &query, XLSX, LIBREOFFICE_XLSX.to_vec()).await;
    assert_eq!(status, 403, "a viewer imports nothing: {body}");
    let changes_before: i64 = sqlx::query("SELECT COUNT(*) FROM changes")
        .fetch_one(server.db().reader())
        .await
        .expect("n")
        .try_get(0)
        .expect("n");
    let (status, dry) = post(&server, &server.admin, &query, XLSX, LIBREOFFICE_XLSX.to_vec()).await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(
        actions(&dry),
        [
            ("web-01.example".into(), "baseline".into()),
            ("db-01.example".into(), "create".into()),
            ("legacy-nas".into(), "create".into())
        ]
    );
    let (status, done) =
        post(&server, &server.admin, &format!("{query}&dry_run=false"), XLSX, LIBREOFFICE_XLSX.to_vec()).await;
    assert_eq!(status, 200, "{done}");
    // No back-dated change: the only changes written are the two registrations, recorded now.
    let changes_after: i64 = sqlx::query("SELECT COUNT(*) FROM changes")
        .fetch_one(server.db().reader())
        .await
        .expect("n")
        .try_get(0)
        .expect("n");
    let registered: i64 = sqlx::query("SELECT COUNT(*) FROM changes WHERE recorded_at < $1")
        .bind((Utc::now() - Duration::minutes(5)).timestamp_micros())
        .fetch_one(server.db().reader())
        .await
        .expect("n")
        .try_get(0)
        .expect("n");
    assert!(changes_after > changes_before, "the new assets are registered");
    assert_eq!(registered, 0, "nothing back-dated");
    // As of the baseline's day (its end, by the date rule): all three as the sheet says.
    let rows = &server.state.snapshot_rows;
    // An hour into the next day: after the baseline's instant (the end of its day) whatever the
    // time of day the test runs at (now - 29 days - 1 hour fell before it from 00:00 to 01:00 UTC).
    let next_day = chrono::NaiveDate::parse_from_str(&jan1, "%Y-%m-%d").expect("date") + Duration::days(1);
    let day_end = next_day.and_hms_opt(1, 0, 0).expect("time").and_utc();
    let then = asof::list_as_of(server.db(), rows, AsOf::exact(day_end), &ListQuery::default()).await.expect("as-of");
    let names: Vec<(&str, Option<&str>)> =
        then.items.iter().map(|i| (i.hostname.as_str(), i.asset_tag.as_deref())).collect();
    assert_eq!(
        names,
        [
            ("db-01.example", Some("IT-2019-0002")),
            ("legacy-nas", Some("IT-2015-0107")),
            ("web-01.example", Some("IT-2019-0001"))
        ]
    );
    let detail = asof::asset_as_of(server.db(), web, AsOf::exact(day_end)).await.expect("as-of").expect("exists then");
    assert_eq!(detail.business.custom["purchase_cost"], json!("12999.5"));
    // As of now, web-01 is as recorded (the baseline gave way to its first change; its tag was
    // never set by the baseline), and the created ones are as registered.
    let now = asof::asset_as_of(server.db(), web, AsOf::exact(Utc::now())).await.expect("as-of").expect("exists");
    assert_eq!(now.summary.asset_tag, None, "a baseline edits nothing");
    // Before the baseline's date: nothing.
    let before = asof::list_as_of(server.db(), rows, AsOf::exact(day_end - Duration::days(3)), &ListQuery::default())
        .await
        .expect("as-of");
    assert_eq!(before.total, 0);
    // The workbook's About sheet names the baseline.
    let period = cmdb_server::service::time::AuditPeriod {
        as_of: AsOf::exact(day_end),
        from: day_end - Duration::days(1),
        to: day_end,
    };
    let file = cmdb_server::service::export::audit_workbook(server.db(), &period).await.expect("workbook");
    let bytes = std::fs::read(file.path()).expect("read");
    use calamine::{Reader, Xlsx, open_workbook_from_rs};
    let mut workbook: Xlsx<_> = open_workbook_from_rs(std::io::Cursor::new(bytes)).expect("xlsx");
    let about = workbook.worksheet_range("About").expect("about");
    let text: Vec<String> =
        about.rows().map(|r| r.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" | ")).collect();
    assert!(
        text.iter().any(|l| l.starts_with("Baseline | inventory-2026.xlsx") && l.contains("3 asset(s)")),
        "{text:?}"
    );
    // A second baseline for a date after the assets' first changes is refused for each row (the
    // history is moved an hour back, so "today" is after it).
    common::age_history(server.db(), 3600).await;
    let today = Utc::now().format("%Y-%m-%d").to_string();
    let (status, refused) =
        post(&server, &server.admin, &format!("?as_of={today}"), XLSX, LIBREOFFICE_XLSX.to_vec()).await;
    assert_eq!(status, 200, "{refused}");
    let errors = refused["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 3, "every asset has history by today: {refused}");
    assert!(errors[0]["message"].as_str().unwrap_or("").contains("has history recorded"), "{refused}");
    // A date after today is refused by the date rule.
    let (status, _) = post(&server, &server.admin, "?as_of=2999-01-01", XLSX, LIBREOFFICE_XLSX.to_vec()).await;
    assert_eq!(status, 422);
    common::assert_every_history_rebuilds_its_state(server.db()).await;
}

on_both_backends!(libreoffice_workbook_imports_by_label, cell_errors_and_matching, baseline_as_of);

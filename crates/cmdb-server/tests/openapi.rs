//! The OpenAPI document: valid by the OpenAPI schema (openapi-spec-validator, installed from PyPI
//! when missing), every route the app serves under /api/v1 is in it, every operation in it is
//! served, and the docs page lists every operation.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Backend, TestServer};
use serde_json::Value;

/// Every `.route("PATH", get(..).post(..))` in the server's sources: (METHOD, PATH).
fn routes_in_source() -> BTreeSet<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src").filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    let mut routes = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        let mut rest = text.as_str();
        while let Some(start) = rest.find(".route(") {
            rest = &rest[start + ".route(".len()..];
            // The call's text up to its closing parenthesis.
            let mut depth = 1;
            let mut end = 0;
            for (index, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = index;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let call = &rest[..end];
            let Some(path) = call.trim_start().strip_prefix('"').and_then(|p| p.split('"').next()) else { continue };
            if !path.starts_with("/api/v1") {
                continue;
            }
            for method in ["get", "post", "put", "patch", "delete"] {
                let calls = call.match_indices(&format!("{method}(")).any(|(i, _)| {
                    i == 0 || !call[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':')
                });
                if calls {
                    routes.insert((method.to_uppercase(), path.to_owned()));
                }
            }
        }
    }
    routes
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

/// Makes sure `openapi-spec-validator` is importable, installing it from PyPI when it is not.
fn validator_ready() {
    let ready =
        || Command::new("python3").args(["-c", "import openapi_spec_validator"]).status().is_ok_and(|s| s.success());
    if !ready() {
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "openapi-spec-validator"])
            .status()
            .expect("pip runs");
        assert!(status.success(), "cannot install openapi-spec-validator");
    }
}

async fn openapi_document(backend: Backend) {
    let db = common::TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let response = server.http.get(format!("{}/api/v1/openapi.json", server.base)).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 200, "the document is public");
    let text = response.text().await.expect("body");
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(doc["openapi"], "3.1.0");

    validator_ready();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &text).expect("write");
    let output = Command::new("python3")
        .args(["-c", "import sys; from openapi_spec_validator import validate; from openapi_spec_validator.readers import read_from_filename; d, _ = read_from_filename(sys.argv[1]); validate(d); print('valid')"])
        .arg(&file)
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "openapi-spec-validator rejects the document: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The validator must be able to fail: a broken copy is rejected.
    let mut broken = doc.clone();
    broken["paths"]["/api/v1/assets"]["get"]["responses"] = Value::String("nope".into());
    std::fs::write(&file, broken.to_string()).expect("write");
    let output = Command::new("python3")
        .args(["-c", "import sys; from openapi_spec_validator import validate; from openapi_spec_validator.readers import read_from_filename; d, _ = read_from_filename(sys.argv[1]); validate(d)"])
        .arg(&file)
        .output()
        .expect("python runs");
    assert!(!output.status.success(), "a broken document must fail validation");

    let served = routes_in_source();
    assert!(served.len() >= 20, "route scan found too little: {served:?}");
    assert!(served.contains(&("PATCH".to_owned(), "/api/v1/assets/{id}".to_owned())), "{served:?}");
    let documented = documented(&doc);
    let missing: Vec<_> = served.difference(&documented).collect();
    assert!(missing.is_empty(), "served under /api/v1 but not in the OpenAPI document: {missing:?}");

    // Every documented operation is served: nothing answers "no route" or 405.
    for (method, path) in &documented {
        let url =
            format!("{}{}", server.base, path.replace("{id}", "1").replace("{list}", "idc").replace("{value}", "x"));
        let response = server
            .http
            .request(method.parse().expect("method"), url)
            .bearer_auth(&server.viewer)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        assert_ne!(status, 405, "{method} {path} is documented but the method is not served");
        assert!(!body.contains("no route for"), "{method} {path} is documented but not served");
    }

    let page = server.http.get(format!("{}/api/docs", server.base)).send().await.expect("request");
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.expect("html");
    for item in doc["paths"].as_object().expect("paths").values() {
        for operation in item.as_object().expect("item").values() {
            let id = operation["operationId"].as_str().expect("operationId");
            assert!(html.contains(&format!("id=\"{id}\"")), "{id} missing from /api/docs");
        }
    }
    assert!(!html.contains("<script"), "the page needs no script");
}

on_both_backends!(openapi_document);

//! The OpenAPI 3.1 document of the REST API (`/api/v1/openapi.json`) and a browsable page of its
//! operations (`/api/docs`), both built once and served from memory.
//!
//! The component schemas of the request and response types are derived from the Rust types
//! (utoipa's `ToSchema`), and the list row's from the one definition of the list's columns, so a
//! field cannot be added, renamed or made optional without the document following. The operations
//! (paths, parameters, roles, answers) are written here, next to the router: the tests check the
//! document against the OpenAPI schema, check that every route the app serves under `/api/v1` is
//! in it and every operation in it is served, and that every schema reference resolves.

use std::sync::LazyLock;

use serde_json::{Map, Value, json};

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn error_responses(codes: &[&str]) -> Map<String, Value> {
    let mut out = Map::new();
    for code in codes {
        let description = match *code {
            "400" => "Malformed request (bad JSON, bad query value).",
            "401" => "Missing, unknown or revoked credentials.",
            "403" => "The credentials lack the role this needs.",
            "404" => "No such resource.",
            "409" => "Conflicts with what is stored.",
            "413" => "Body larger than the configured limit.",
            "415" => "Wrong Content-Type.",
            "422" => "Well-formed but invalid; `pointer` names the offending value.",
            "503" => "The database is unavailable; retry after Retry-After seconds.",
            _ => "Error.",
        };
        out.insert((*code).to_owned(), json_response(description, schema_ref("Error")));
    }
    out
}

fn param(name: &str, location: &str, description: &str, schema: Value, required: bool) -> Value {
    json!({"name": name, "in": location, "description": description, "required": required, "schema": schema})
}

fn list_filters() -> Vec<Value> {
    let text = json!({"type": "string"});
    vec![
        param(
            "q",
            "query",
            "Search: host name (or a part after - . _), IP, MAC, any serial, model (prefix, case-insensitive).",
            text.clone(),
            false,
        ),
        param("status", "query", "Status (racked, online, offline, retired).", text.clone(), false),
        param("idc", "query", "IDC.", text.clone(), false),
        param("business_unit", "query", "Business unit.", text.clone(), false),
        param("tag", "query", "One tag.", text.clone(), false),
        param("os", "query", "OS name.", text.clone(), false),
        param("manufacturer", "query", "Board manufacturer.", text.clone(), false),
        param("owner", "query", "Owner.", text.clone(), false),
        param(
            "sort",
            "query",
            "Sort column (id, hostname, status, idc, business_unit, owner, os_name, manufacturer, model, last_seen_at, created_at, cpu_count, memory_mb); prefix - for descending.",
            text,
            false,
        ),
    ]
}

fn paging() -> Vec<Value> {
    vec![
        param("page", "query", "Page, from 1.", json!({"type": "integer", "minimum": 1}), false),
        param(
            "per_page",
            "query",
            "Rows per page (1 to 500, default 50).",
            json!({"type": "integer", "minimum": 1, "maximum": 500}),
            false,
        ),
    ]
}

fn as_of(required: bool) -> Value {
    param(
        "as_of",
        "query",
        "The moment to rebuild: RFC 3339 (2025-12-31T23:59:59Z) or a date (2025-12-31 = the end of that day, UTC). Follows the time the server recorded each change.",
        json!({"type": "string"}),
        required,
    )
}

fn period() -> Vec<Value> {
    vec![
        param(
            "from",
            "query",
            "Start of the change period, inclusive (RFC 3339 or a date = its start). Default: the start of as_of's year.",
            json!({"type": "string"}),
            false,
        ),
        param(
            "to",
            "query",
            "End of the change period, exclusive (RFC 3339 or a date = the end of it). Default: just after as_of.",
            json!({"type": "string"}),
            false,
        ),
    ]
}

fn id_param() -> Value {
    param("id", "path", "Asset id.", json!({"type": "integer", "format": "int64"}), true)
}

fn list_param() -> Value {
    param("list", "path", "Which list.", json!({"type": "string", "enum": ["idc", "business_unit", "tag"]}), true)
}

fn value_param() -> Value {
    param("value", "path", "The value.", json!({"type": "string"}), true)
}

fn file(description: &str, media: &str) -> Value {
    json!({"description": description, "content": {media: {"schema": {"type": "string", "format": "binary"}}}})
}

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

struct Op {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    security: &'static str,
    parameters: Vec<Value>,
    body: Option<Value>,
    ok: (&'static str, Value),
    errors: &'static [&'static str],
}

fn operations() -> Vec<Op> {
    let viewer = "Bearer token, viewer role or above.";
    let _ = viewer;
    let mut filters_paged = list_filters();
    filters_paged.extend(paging());
    let mut asof_filters_paged = vec![as_of(true)];
    asof_filters_paged.extend(filters_paged.clone());
    let mut export_filters = vec![as_of(false)];
    export_filters.extend(list_filters());
    let mut audit_params = vec![as_of(true)];
    audit_params.extend(period());
    let json_body = |schema: Value| json!({"required": true, "content": {"application/json": {"schema": schema}}});
    vec![
        Op {
            method: "post",
            path: "/api/v1/reports",
            id: "postReport",
            tag: "ingest",
            summary: "Ingest one signed collector report (HMAC-signed by an agent key).",
            security: "agent",
            parameters: vec![],
            body: Some(json_body(
                json!({"type": "object", "description": "A report in format v1 (docs/report-format.md, schema/report-v1.schema.json)."}),
            )),
            ok: (
                "200",
                json_response(
                    "What the server did with the report (repeating a report id returns the first outcome).",
                    schema_ref("Outcome"),
                ),
            ),
            errors: &["400", "401", "403", "413", "415", "422", "503"],
        },
        Op {
            method: "get",
            path: "/api/v1/collect-targets",
            id: "collectTargets",
            tag: "ingest",
            summary: "Online hosts that have not reported since a cutoff (for SSH/Salt collectors).",
            security: "agent",
            parameters: vec![
                param("mode", "query", "ssh or salt (informational).", json!({"type": "string"}), false),
                param(
                    "since",
                    "query",
                    "Cutoff (RFC 3339); default the start of today in the server's time zone.",
                    json!({"type": "string"}),
                    false,
                ),
            ],
            body: None,
            ok: (
                "200",
                json_response(
                    "The cutoff and the hosts.",
                    json!({"type": "object", "properties": {"cutoff": {"type": "string"}, "mode": {"type": ["string", "null"]}, "accepts_collected_for": {"type": "boolean", "description": "Reports may carry collected_for (the target's asset id)."}, "targets": {"type": "array", "items": schema_ref("Target")}}}),
                ),
            ),
            errors: &["401", "422", "503"],
        },
        Op {
            method: "get",
            path: "/api/v1/assets",
            id: "listAssets",
            tag: "assets",
            summary: "List and search assets.",
            security: "viewer",
            parameters: filters_paged.clone(),
            body: None,
            ok: ("200", json_response("One page.", schema_ref("AssetPage"))),
            errors: &["401", "403", "503"],
        },
        Op {
            method: "post",
            path: "/api/v1/assets",
            id: "registerAsset",
            tag: "assets",
            summary: "Register a host by hand (hostname plus business fields).",
            security: "editor",
            parameters: vec![],
            body: Some(json_body(
                json!({"type": "object", "required": ["hostname"], "properties": {"hostname": {"type": "string"}}, "additionalProperties": true}),
            )),
            ok: ("201", json_response("The new asset.", schema_ref("AssetDetail"))),
            errors: &["401", "403", "409", "415", "422", "503"],
        },
        Op {
            method: "get",
            path: "/api/v1/assets/{id}",
            id: "getAsset",
            tag: "assets",
            summary: "One asset with every section and component.",
            security: "viewer",
            parameters: vec![id_param()],
            body: None,
            ok: ("200", json_response("The asset.", schema_ref("AssetDetail"))),
            errors: &["401", "403", "404", "503"],
        },
        Op {
            method: "patch",
            path: "/api/v1/assets/{id}",
            id: "patchAsset",
            tag: "assets",
            summary: "Edit business fields (recorded as changes with source user:<name>).",
            security: "editor",
            parameters: vec![id_param()],
            body: Some(json_body(schema_ref("BusinessPatch"))),
            ok: ("200", json_response("The asset after the edit.", schema_ref("AssetDetail"))),
            errors: &["401", "403", "404", "415", "422", "503"],
        },
        Op {
            method: "get",
            path: "/api/v1/assets/{id}/changes",
            id: "assetChanges",
            tag: "history",
            summary: "An asset's change records, newest first.",
            security: "viewer",
            parameters: vec![
                id_param(),
                param(
                    "before",
                    "query",
                    "Only ids below this (the previous page's next).",
                    json!({"type": "integer"}),
                    false,
                ),
                param("limit", "query", "Rows (max 1000).", json!({"type": "integer"}), false),
            ],
            body: None,
            ok: ("200", json_response("A page.", schema_ref("ChangePage"))),
            errors: &["401", "403", "503"],
        },
        Op {
            method: "get",
            path: "/api/v1/changes",
            id: "changeFeed",
            tag: "history",
            summary: "Every change, oldest first; follow next to never miss one.",
            security: "viewer",
            parameters: vec![
                param("after", "query", "The previous page's next cursor.", json!({"type": "string"}), false),
                param("limit", "query", "Rows (max 1000).", json!({"type": "integer"}), false),
            ],
            body: None,
            ok: ("200", json_response("A page.", schema_ref("ChangePage"))),
            errors: &["401", "403", "422", "503"],
        },
        Op {
            method: "get",
            path: "/api/v1/errors",
            id: "collectionErrors",
            tag: "history",
            summary: "Collection errors reported by collectors, newest first.",
            security: "viewer",
            parameters: vec![
                param("before", "query", "Only ids below this.", json!({"type": "integer"}), false),
                param("limit", "query", "Rows (max 1000).", json!({"type": "integer"}), false),
                param("asset_id", "query", "Only this asset.", json!({"type": "integer"}), false),
            ],
            body: None,
            ok: (
                "200",
                json_response(
                    "A page.",
                    json!({"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object"}}, "next": {"type": ["string", "null"]}}}),
                ),
            ),
            errors: &["401", "403", "503"],
        },
        Op {
            method: "get",
            path: "/api/v1/audit/assets",
            id: "listAssetsAsOf",
            tag: "audit",
            summary: "The asset list as it stood at as_of, rebuilt from history; filters and paging as the live list.",
            security: "viewer",
            parameters: asof_filters_paged,
            body: None,
            ok: ("200", json_response("One page.", schema_ref("AssetPage"))),
            errors: &["400", "401", "403", "503"],
        },
        Op {
            method: "get",
            path: "/api/v1/audit/assets/{id}",
            id: "getAssetAsOf",
            tag: "audit",
            summary: "One asset as it stood at as_of (404 when it did not exist yet).",
            security: "viewer",
            parameters: vec![id_param(), as_of(true)],
            body: None,
            ok: ("200", json_response("The asset.", schema_ref("AssetDetail"))),
            errors: &["400", "401", "403", "404", "503"],
        },
        Op {
            method: "get",
            path: "/api/v1/audit/snapshots",
            id: "listSnapshots",
            tag: "audit",
            summary: "The snapshots the as-of view starts from.",
            security: "viewer",
            parameters: vec![],
            body: None,
            ok: (
                "200",
                json_response(
                    "Newest first.",
                    json!({"type": "object", "properties": {"items": {"type": "array", "items": schema_ref("Snapshot")}}}),
                ),
            ),
            errors: &["401", "403", "503"],
        },
        Op {
            method: "post",
            path: "/api/v1/audit/snapshots",
            id: "takeSnapshot",
            tag: "audit",
            summary: "Take a snapshot now (of two minutes ago) or at a past time; one a day is taken automatically.",
            security: "admin",
            parameters: vec![],
            body: Some(
                json!({"required": false, "content": {"application/json": {"schema": {"type": "object", "properties": {"at": {"type": "string", "description": "RFC 3339 or a date; at least two minutes ago."}}, "additionalProperties": false}}}}),
            ),
            ok: ("200", json_response("The snapshot.", schema_ref("SnapshotInfo"))),
            errors: &["400", "401", "403", "415", "422", "503"],
        },
        Op {
            method: "get",
            path: "/api/v1/audit/export.xlsx",
            id: "auditWorkbook",
            tag: "audit",
            summary: "The audit workbook: About, Assets and Components as of as_of, and every Change recorded in [from, to). Long tables continue on numbered sheets.",
            security: "viewer",
            parameters: audit_params.clone(),
            body: None,
            ok: ("200", file("The workbook.", XLSX)),
            errors: &["400", "401", "403", "422", "503"],
        },
        Op {
            method: "get",
            path: "/api/v1/audit/assets.csv",
            id: "auditAssetsCsv",
            tag: "audit",
            summary: "The audit's asset sheet as CSV.",
            security: "viewer",
            parameters: vec![as_of(true)],
            body: None,
            ok: ("200", file("CSV.", "text/csv")),
            errors: &["400", "401", "403", "503"],
        },
        Op {
            method: "get",
            path: "/api/v1/audit/components.csv",
            id: "auditComponentsCsv",
            tag: "audit",
            summary: "The audit's component sheet as CSV.",
            security: "viewer",
            parameters: vec![as_of(true)],
            body: None,
            ok: ("200", file("CSV.", "text/csv")),
            errors: &["400", "401", "403", "503"],
        },
        Op {
            method: "get",
            path: "/api/v1/audit/changes.csv",
            id: "auditChangesCsv",
            tag: "audit",
            summary: "The audit's change sheet as CSV (as_of only sets the default period).",
            security: "viewer",
            parameters: audit_params,
            body: None,
            ok: ("200", file("CSV.", "text/csv")),
            errors: &["400", "401", "403", "422", "503"],
        },
        Op {
            method: "get",
            path: "/api/v1/export/assets.csv",
            id: "exportAssetsCsv",
            tag: "export",
            summary: "Every asset the filters select (all pages), live or as of as_of, as CSV.",
            security: "viewer",
            parameters: export_filters.clone(),
            body: None,
            ok: ("200", file("CSV.", "text/csv")),
            errors: &["400", "401", "403", "503"],
        },
        Op {
            method: "get",
            path: "/api/v1/export/assets.xlsx",
            id: "exportAssetsXlsx",
            tag: "export",
            summary: "Every asset the filters select (all pages), live or as of as_of, as XLSX.",
            security: "viewer",
            parameters: export_filters,
            body: None,
            ok: ("200", file("The workbook.", XLSX)),
            errors: &["400", "401", "403", "503"],
        },
        Op {
            method: "post",
            path: "/api/v1/import/csv",
            id: "importCsv",
            tag: "import",
            summary: "Import hosts and business fields from CSV. Checks every line first; a dry run (the default) writes nothing; a real run with any invalid line applies nothing (422).",
            security: "editor",
            parameters: vec![param(
                "dry_run",
                "query",
                "true (default) to only check; false to apply.",
                json!({"type": "boolean"}),
                false,
            )],
            body: Some(json!({"required": true, "content": {"text/csv": {"schema": {"type": "string"}}}})),
            ok: ("200", json_response("What each line does (or did).", schema_ref("ImportReport"))),
            errors: &["400", "401", "403", "409", "413", "415", "422", "503"],
        },
        Op {
            method: "get",
            path: "/api/v1/lists",
            id: "managedLists",
            tag: "lists",
            summary: "Every managed list (idc, business_unit, tag) with its values.",
            security: "viewer",
            parameters: vec![],
            body: None,
            ok: (
                "200",
                json_response(
                    "Lists by name.",
                    json!({"type": "object", "additionalProperties": {"type": "array", "items": schema_ref("ManagedValue")}}),
                ),
            ),
            errors: &["401", "403", "503"],
        },
        Op {
            method: "get",
            path: "/api/v1/lists/{list}",
            id: "managedList",
            tag: "lists",
            summary: "One managed list with how many assets use each value.",
            security: "viewer",
            parameters: vec![list_param()],
            body: None,
            ok: (
                "200",
                json_response(
                    "The values.",
                    json!({"type": "object", "properties": {"items": {"type": "array", "items": schema_ref("ManagedValue")}}}),
                ),
            ),
            errors: &["401", "403", "404", "503"],
        },
        Op {
            method: "post",
            path: "/api/v1/lists/{list}",
            id: "addManagedValue",
            tag: "lists",
            summary: "Add a value to a list.",
            security: "editor",
            parameters: vec![list_param()],
            body: Some(json_body(
                json!({"type": "object", "required": ["value"], "properties": {"value": {"type": "string"}, "description": {"type": "string"}}, "additionalProperties": false}),
            )),
            ok: ("201", json_response("The value.", schema_ref("ManagedValue"))),
            errors: &["401", "403", "404", "409", "415", "422", "503"],
        },
        Op {
            method: "patch",
            path: "/api/v1/lists/{list}/{value}",
            id: "describeManagedValue",
            tag: "lists",
            summary: "Change a value's description.",
            security: "editor",
            parameters: vec![list_param(), value_param()],
            body: Some(json_body(
                json!({"type": "object", "required": ["description"], "properties": {"description": {"type": "string"}}, "additionalProperties": false}),
            )),
            ok: ("204", json!({"description": "Done."})),
            errors: &["401", "403", "404", "415", "422", "503"],
        },
        Op {
            method: "delete",
            path: "/api/v1/lists/{list}/{value}",
            id: "removeManagedValue",
            tag: "lists",
            summary: "Remove a value no asset uses.",
            security: "admin",
            parameters: vec![list_param(), value_param()],
            body: None,
            ok: ("204", json!({"description": "Done."})),
            errors: &["401", "403", "404", "409", "503"],
        },
        Op {
            method: "get",
            path: "/api/v1/openapi.json",
            id: "openapi",
            tag: "meta",
            summary: "This document.",
            security: "none",
            parameters: vec![],
            body: None,
            ok: ("200", json_response("OpenAPI 3.1.", json!({"type": "object"}))),
            errors: &[],
        },
    ]
}

/// The list row's schema, from the one definition of the list's columns.
fn list_item_schema() -> Value {
    use crate::service::assets::{ColumnKind, LIST};
    let mut properties = Map::new();
    let mut required = Vec::new();
    for column in LIST {
        let mut schema = match column.kind {
            ColumnKind::Id => json!({"type": "integer", "format": "int64"}),
            ColumnKind::Text => json!({"type": "string"}),
            ColumnKind::OptionalText => json!({"type": ["string", "null"]}),
            ColumnKind::OptionalInt => json!({"type": ["integer", "null"], "format": "int64"}),
            ColumnKind::Words => json!({"type": "array", "items": {"type": "string"}}),
            ColumnKind::Time => json!({"type": "string", "format": "date-time"}),
            ColumnKind::OptionalTime => json!({"type": ["string", "null"], "format": "date-time"}),
        };
        if column.key == "status" {
            schema["enum"] = json!(["racked", "online", "offline", "retired"]);
        }
        schema["description"] = json!(column.description);
        if matches!(column.kind, ColumnKind::Id | ColumnKind::Text | ColumnKind::Words | ColumnKind::Time) {
            required.push(column.key);
        }
        properties.insert(column.key.to_owned(), schema);
    }
    json!({"type": "object", "required": required, "properties": properties})
}

/// The request and response types whose schemas are derived from their Rust definitions (field
/// names, types, optionality and doc comments), so the document cannot drift from what is sent.
#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(
    crate::service::assets::AssetPage,
    crate::service::assets::AssetDetail,
    crate::service::time::Stated,
    crate::store::ChangeRecord,
    crate::service::history::ChangePage,
    crate::ingest::Outcome,
    crate::service::collect::Target,
    crate::service::asof::SnapshotInfo,
    crate::service::lists::ManagedValue,
    crate::service::import::ImportReport,
    crate::service::import::LineError,
    crate::service::import::LineResult,
    crate::service::collection_errors::CollectionError,
)))]
struct DerivedSchemas;

fn schemas() -> Value {
    let text_or_null = json!({"type": ["string", "null"]});
    let int_or_null = json!({"type": ["integer", "null"]});
    let time = json!({"type": "string", "format": "date-time"});
    let mut out = Map::new();
    let derived = serde_json::to_value(<DerivedSchemas as utoipa::OpenApi>::openapi().components)
        .ok()
        .and_then(|c| c.get("schemas").and_then(Value::as_object).cloned())
        .unwrap_or_default();
    out.extend(derived);
    // The list row comes from the one definition of the list's columns.
    out.insert("AssetListItem".to_owned(), list_item_schema());
    // Written here: the error body (built in the edge), a request body (any subset of the business
    // fields, with the forms the parser accepts) and the snapshot listing.
    let hand = json!({
        "Error": {"type": "object", "required": ["error", "message"], "properties": {
            "error": {"type": "string", "description": "Machine-readable code (bad_request, invalid, unauthorized, forbidden, not_found, conflict, too_large, unsupported_media_type, too_many_requests, unavailable, internal)."},
            "message": {"type": "string"}, "pointer": {"type": "string"}}},
        "BusinessPatch": {"type": "object", "additionalProperties": false, "description": "Business fields to set; null clears.", "properties": {
            "idc": text_or_null, "cabinet": text_or_null, "cabinet_u": int_or_null, "business_unit": text_or_null, "owner": text_or_null,
            "status": {"type": ["string", "null"], "enum": ["racked", "online", "offline", "retired", null]},
            "tags": {"type": ["array", "string", "null"], "items": {"type": "string"}}, "manage_address": text_or_null,
            "ssh_port": {"type": ["integer", "string", "null"]}, "salt_minion_id": text_or_null, "notes": text_or_null}},
        "Snapshot": {"type": "object", "required": ["id", "taken_at", "created_at", "reason", "asset_count"], "properties": {
            "id": {"type": "integer"}, "taken_at": time, "created_at": time, "reason": {"type": "string"}, "asset_count": {"type": "integer"}}},
    });
    if let Value::Object(hand) = hand {
        out.extend(hand);
    }
    Value::Object(out)
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for op in operations() {
        let mut responses = Map::new();
        responses.insert(op.ok.0.to_owned(), op.ok.1);
        responses.extend(error_responses(op.errors));
        let mut operation = json!({
            "operationId": op.id,
            "tags": [op.tag],
            "summary": op.summary,
            "responses": responses,
        });
        if !op.parameters.is_empty() {
            operation["parameters"] = Value::Array(op.parameters);
        }
        if let Some(body) = op.body {
            operation["requestBody"] = body;
        }
        operation["security"] = match op.security {
            "none" => json!([]),
            "agent" => json!([{"agentSignature": []}]),
            _ => json!([{"bearer": []}]),
        };
        if let "viewer" | "editor" | "admin" = op.security {
            operation["x-cmdb-role"] = json!(op.security);
            operation["description"] = json!(format!("Needs the {} role or above.", op.security));
        }
        let entry = paths.entry(op.path.to_owned()).or_insert_with(|| json!({}));
        entry[op.method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "cmdb",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The cmdb REST API: inventory reported by collectors, business fields maintained by people, history of every change, the year-end audit (as-of view, exports) and CSV import. Times are RFC 3339 in UTC.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "ingest", "description": "Collectors (signed with agent keys)."},
            {"name": "assets", "description": "Assets, live."},
            {"name": "history", "description": "Change records."},
            {"name": "audit", "description": "The as-of view and the audit exports."},
            {"name": "export", "description": "List exports."},
            {"name": "import", "description": "CSV import."},
            {"name": "lists", "description": "Managed lists of IDC, business unit and tag values."},
            {"name": "meta", "description": "This document."},
        ],
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API token (cmdb_...); its role decides what it may do."},
                "agentSignature": {"type": "apiKey", "in": "header", "name": "Authorization", "description": "CMDB-HMAC-SHA256 signature of the request by an agent key (see docs/report-format.md)."},
            },
        },
    })
}

/// The document as served (built once).
pub static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| serde_json::to_string_pretty(&document()).unwrap_or_else(|_| "{}".to_owned()));

/// One operation as the docs page shows it.
#[derive(serde::Serialize)]
struct DocOperation {
    method: &'static str,
    id: &'static str,
    path: &'static str,
    summary: &'static str,
    access: String,
    parameters: Vec<DocParameter>,
    ok_code: &'static str,
    ok_description: String,
    errors: Vec<&'static str>,
}

#[derive(serde::Serialize)]
struct DocParameter {
    name: String,
    location: String,
    required: bool,
    description: String,
}

#[derive(serde::Serialize)]
struct DocTag {
    name: String,
    description: String,
    operations: Vec<DocOperation>,
}

#[derive(serde::Serialize)]
struct DocPage {
    description: String,
    tags: Vec<DocTag>,
}

/// The browsable page's content: every operation with its role, parameters and answers, grouped
/// by tag, from the same operations as the document.
fn page_content() -> DocPage {
    let doc = document();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut ops = operations();
    let mut tags = Vec::new();
    for tag in doc["tags"].as_array().into_iter().flatten() {
        let name = text(&tag["name"]);
        let (mine, rest): (Vec<Op>, Vec<Op>) = ops.into_iter().partition(|o| o.tag == name);
        ops = rest;
        let operations = mine
            .into_iter()
            .map(|op| DocOperation {
                method: op.method,
                id: op.id,
                path: op.path,
                summary: op.summary,
                access: match op.security {
                    "none" => "public".to_owned(),
                    "agent" => "signed by an agent key".to_owned(),
                    role => format!("bearer token, {role} role or above"),
                },
                parameters: op
                    .parameters
                    .iter()
                    .map(|p| DocParameter {
                        name: text(&p["name"]),
                        location: text(&p["in"]),
                        required: p["required"].as_bool().unwrap_or(false),
                        description: text(&p["description"]),
                    })
                    .collect(),
                ok_code: op.ok.0,
                ok_description: text(&op.ok.1["description"]),
                errors: op.errors.to_vec(),
            })
            .collect();
        tags.push(DocTag { name, description: text(&tag["description"]), operations });
    }
    DocPage { description: text(&doc["info"]["description"]), tags }
}

/// The browsable page, rendered once through the `api_docs.html` template like every page.
pub static PAGE: LazyLock<Result<String, String>> = LazyLock::new(|| {
    crate::web::templates::render("api_docs.html", &page_content()).map(|html| html.0).map_err(|e| e.to_string())
});

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    out.push(target.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 20, "{found:?}");
        for target in found {
            let name = target.strip_prefix("#/components/schemas/").expect("a component reference");
            assert!(schemas.contains_key(name), "{target} does not resolve");
        }
    }

    #[test]
    fn derived_schemas_follow_the_types() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        // Fields added to a type appear without anyone editing the document.
        let text = schemas["AssetDetail"].to_string();
        for field in ["business", "sections", "as_of", "AssetListItem"] {
            assert!(text.contains(field), "AssetDetail lacks {field}: {text}");
        }
        let page = schemas["AssetPage"].to_string();
        assert!(page.contains("as_of") && page.contains("Stated"), "{page}");
        let change = &schemas["ChangeRecord"]["properties"];
        assert_eq!(change["action"]["type"], "string");
        assert!(change.get("summary").is_some() && change.get("cursor").is_some(), "{change}");
        assert!(schemas["CollectionError"]["properties"].get("report_id").is_some());
    }
}

-- Core schema: assets, their current state, the change history, and the bookkeeping of ingestion.
-- Timestamps are Unix microseconds (BIGINT) in both backends so that SQL is shared and ordering is exact.
-- JSON values are stored as canonical text (keys sorted).

CREATE TABLE assets (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    hostname           TEXT    NOT NULL,
    board_uuid         TEXT,
    board_sn           TEXT,
    board_manufacturer TEXT,
    machine_id         TEXT,
    status             TEXT    NOT NULL,
    idc                TEXT,
    cabinet            TEXT,
    business_unit      TEXT,
    owner              TEXT,
    tags               TEXT    NOT NULL DEFAULT '',
    manage_address     TEXT,
    ssh_port           BIGINT,
    salt_minion_id     TEXT,
    os_name            TEXT,
    os_version         TEXT,
    manufacturer       TEXT,
    model              TEXT,
    serial             TEXT,
    cpu_model          TEXT,
    cpu_count          BIGINT,
    memory_mb          BIGINT,
    disk_bytes         BIGINT,
    ip_addresses       TEXT    NOT NULL DEFAULT '',
    created_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL,
    last_seen_at       BIGINT,
    last_collected_at  BIGINT,
    last_report_id     TEXT,
    version            BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX assets_hostname ON assets (hostname);
CREATE INDEX assets_board_uuid ON assets (board_uuid);
CREATE INDEX assets_board_sn ON assets (board_sn);
CREATE INDEX assets_machine_id ON assets (machine_id);
CREATE INDEX assets_status_seen ON assets (status, last_seen_at);

CREATE TABLE asset_sections (
    asset_id BIGINT NOT NULL REFERENCES assets (id),
    section  TEXT   NOT NULL,
    fields   TEXT   NOT NULL,
    PRIMARY KEY (asset_id, section)
);

CREATE TABLE components (
    asset_id BIGINT NOT NULL REFERENCES assets (id),
    section  TEXT   NOT NULL,
    ckey     TEXT   NOT NULL,
    data     TEXT   NOT NULL,
    PRIMARY KEY (asset_id, section, ckey)
);

CREATE TABLE changes (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    txid         BIGINT  NOT NULL DEFAULT 0,
    asset_id     BIGINT  NOT NULL REFERENCES assets (id),
    recorded_at  BIGINT  NOT NULL,
    collected_at BIGINT,
    report_id    TEXT,
    source       TEXT    NOT NULL,
    section      TEXT    NOT NULL,
    component    TEXT,
    path         TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    old_value    TEXT,
    new_value    TEXT,
    summary      TEXT    NOT NULL
);
CREATE INDEX changes_asset ON changes (asset_id, id);
CREATE INDEX changes_recorded ON changes (recorded_at);

CREATE TABLE search_terms (
    term     TEXT   NOT NULL,
    asset_id BIGINT NOT NULL REFERENCES assets (id),
    PRIMARY KEY (term, asset_id)
);
CREATE INDEX search_terms_asset ON search_terms (asset_id);

CREATE TABLE reports (
    report_id   TEXT   PRIMARY KEY,
    asset_id    BIGINT,
    received_at BIGINT NOT NULL,
    outcome     TEXT   NOT NULL
);
CREATE INDEX reports_received ON reports (received_at);

CREATE TABLE nonces (
    key_id     TEXT   NOT NULL,
    nonce      TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX nonces_expiry ON nonces (expires_at);

CREATE TABLE collection_errors (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    asset_id     BIGINT,
    report_id    TEXT,
    hostname     TEXT   NOT NULL,
    source       TEXT   NOT NULL,
    section      TEXT   NOT NULL,
    message      TEXT   NOT NULL,
    collected_at BIGINT,
    recorded_at  BIGINT NOT NULL
);
CREATE INDEX collection_errors_recorded ON collection_errors (recorded_at);
CREATE INDEX collection_errors_asset ON collection_errors (asset_id, id);

CREATE TABLE agent_keys (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id     TEXT   NOT NULL UNIQUE,
    secret     TEXT   NOT NULL,
    scope      TEXT   NOT NULL,
    asset_id   BIGINT,
    name       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT   NOT NULL,
    token_hash   TEXT   NOT NULL UNIQUE,
    role         TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    last_used_at BIGINT
);

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- The change feed orders by (txid, id); on SQLite txid is always 0 and commits are serialized, so
-- id order is commit order.
CREATE INDEX changes_feed ON changes (txid, id);

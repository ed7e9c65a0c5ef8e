-- People: users with argon2id password hashes, their sessions, the login throttle and the audit log.
-- Timestamps are Unix microseconds like everywhere else. The same schema exists for PostgreSQL.

CREATE TABLE users (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    name                TEXT    NOT NULL UNIQUE,
    -- PHC string ($argon2id$v=19$m=...,t=...,p=...$salt$hash); never the password.
    password_hash       TEXT    NOT NULL,
    role                TEXT    NOT NULL,
    -- 1 when the password was generated (first start, reset by an admin) and must be changed at
    -- the next login.
    must_change_password BIGINT NOT NULL DEFAULT 0,
    created_at          BIGINT  NOT NULL,
    updated_at          BIGINT  NOT NULL,
    last_login_at       BIGINT,
    disabled_at         BIGINT
);

-- A session is known by the SHA-256 of its cookie value, so a leaked database does not hand out
-- live sessions. csrf_token is the synchronizer token every form of the session must carry.
CREATE TABLE sessions (
    id_hash      TEXT   PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id),
    csrf_token   TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    client_ip    TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- Failed logins per scope ("user:<name>" or "ip:<address>"), shared by every server instance.
CREATE TABLE login_throttle (
    scope           TEXT   PRIMARY KEY,
    failures        BIGINT NOT NULL,
    last_failure_at BIGINT NOT NULL,
    blocked_until   BIGINT NOT NULL
);
CREATE INDEX login_throttle_last ON login_throttle (last_failure_at);

CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        BIGINT  NOT NULL,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    detail    TEXT    NOT NULL,
    client_ip TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_action ON audit_log (action, id);
CREATE INDEX audit_log_actor ON audit_log (actor, id);

-- The web UI's filters, sorts and dashboard GROUP BYs read these columns of 100,000 assets.
CREATE INDEX IF NOT EXISTS ui_assets_idc ON assets (idc);
CREATE INDEX IF NOT EXISTS ui_assets_business_unit ON assets (business_unit);
CREATE INDEX IF NOT EXISTS ui_assets_os_name ON assets (os_name);
CREATE INDEX IF NOT EXISTS ui_assets_manufacturer ON assets (manufacturer);
CREATE INDEX IF NOT EXISTS ui_assets_owner ON assets (owner);
CREATE INDEX IF NOT EXISTS ui_assets_model ON assets (model);
CREATE INDEX IF NOT EXISTS ui_assets_last_seen ON assets (last_seen_at);
CREATE INDEX IF NOT EXISTS ui_assets_created ON assets (created_at);
-- The change log's filters by source ("what did people change": user:<name>) and by section read
-- newest first through these, instead of scanning millions of changes for a rare value.
CREATE INDEX IF NOT EXISTS ui_changes_source ON changes (source, id);
CREATE INDEX IF NOT EXISTS ui_changes_section ON changes (section, id);

-- Year-end audit and managed lists.
--
-- The as-of view rebuilds assets from the `changes` history. So that a date a year back does not
-- mean replaying millions of changes, snapshots record, for every asset, the id of the last change
-- recorded at or before the snapshot's time (`upto`); the state after that change is stored once
-- in `asset_versions` and shared by every snapshot in which the asset had not changed since.
-- Everything here is derived from `changes` and can be rebuilt from it.

CREATE TABLE snapshots (
    id          BIGSERIAL PRIMARY KEY,
    -- Every change recorded at or before this time (Unix µs) is in the snapshot.
    taken_at    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    -- 'building' while rows are written; only 'complete' snapshots are read.
    status      TEXT   NOT NULL,
    -- 'daily' (the background task) or 'manual:<name>'.
    reason      TEXT   NOT NULL,
    asset_count BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX snapshots_taken ON snapshots (status, taken_at);

CREATE TABLE asset_versions (
    asset_id          BIGINT NOT NULL,
    upto              BIGINT NOT NULL,
    hostname          TEXT   NOT NULL,
    status            TEXT   NOT NULL,
    idc               TEXT,
    cabinet           TEXT,
    business_unit     TEXT,
    owner             TEXT,
    tags              TEXT   NOT NULL,
    os_name           TEXT,
    os_version        TEXT,
    manufacturer      TEXT,
    model             TEXT,
    serial            TEXT,
    cpu_model         TEXT,
    cpu_count         BIGINT,
    memory_mb         BIGINT,
    disk_bytes        BIGINT,
    ip_addresses      TEXT   NOT NULL,
    manage_address    TEXT,
    -- recorded_at and collected_at of the latest report-sourced change up to `upto`.
    last_seen_at      BIGINT,
    last_collected_at BIGINT,
    created_at        BIGINT NOT NULL,
    -- Search terms, each preceded by a newline, so a prefix search is a substring search for "\n" || q.
    terms             TEXT   NOT NULL,
    -- The whole state as canonical JSON.
    state             TEXT   NOT NULL,
    PRIMARY KEY (asset_id, upto)
);

CREATE TABLE snapshot_members (
    snapshot_id BIGINT NOT NULL REFERENCES snapshots (id),
    asset_id    BIGINT NOT NULL,
    upto        BIGINT NOT NULL,
    PRIMARY KEY (snapshot_id, asset_id)
);

-- The values people may choose for IDC, business unit and tags.
CREATE TABLE managed_values (
    list        TEXT   NOT NULL,
    value       TEXT   NOT NULL,
    description TEXT   NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    created_by  TEXT   NOT NULL,
    PRIMARY KEY (list, value)
);

-- The audit export's change sheet reads a period of history by recorded_at (changes_recorded) and
-- the as-of view reads each asset's changes by id (changes_asset): both indexes exist already.

-- The asset record an audit needs: asset tags, custom fields (the finance set first), and
-- deletion and merging recorded in history.

-- The asset tag is a business field (business.asset_tag in the state) and a list column, kept in
-- assets and in every asset version like the other business columns.
ALTER TABLE assets ADD COLUMN asset_tag TEXT;
ALTER TABLE asset_versions ADD COLUMN asset_tag TEXT;

-- A deleted (or merged) asset keeps its row and its history; these columns, derived from its
-- `identity` pseudo-section like every other column from the state, take it off lists, counts,
-- duplicates, collection targets and identity matching. merged_into names the survivor.
ALTER TABLE assets ADD COLUMN deleted_at BIGINT;
ALTER TABLE assets ADD COLUMN merged_into BIGINT;
ALTER TABLE asset_versions ADD COLUMN deleted_at BIGINT;

-- One tag, one asset among those not deleted: the service answers 409 naming the holder first;
-- the index holds the rule against concurrent writers.
CREATE UNIQUE INDEX assets_asset_tag ON assets (asset_tag) WHERE asset_tag IS NOT NULL AND deleted_at IS NULL;

-- Identity keys a survivor took over in a merge (from its identity.alias:<id> components), so
-- reports from the merged record's machine land on the survivor.
CREATE TABLE asset_aliases (
    asset_id           BIGINT NOT NULL REFERENCES assets (id),
    alias_of           BIGINT NOT NULL,
    hostname           TEXT,
    board_uuid         TEXT,
    board_sn           TEXT,
    board_manufacturer TEXT,
    machine_id         TEXT,
    PRIMARY KEY (asset_id, alias_of)
);
CREATE INDEX asset_aliases_board_uuid ON asset_aliases (board_uuid);
CREATE INDEX asset_aliases_board_sn ON asset_aliases (board_sn);
CREATE INDEX asset_aliases_machine_id ON asset_aliases (machine_id);
CREATE INDEX asset_aliases_hostname ON asset_aliases (hostname);

-- Fields admins add to the asset record. A deleted field is hidden (deleted_at) but its key is
-- never reused: its values stay in history under that key.
CREATE TABLE custom_fields (
    key        TEXT   PRIMARY KEY,
    label      TEXT   NOT NULL,
    field_type TEXT   NOT NULL,
    -- For enum fields: the choices as a JSON array of strings.
    choices    TEXT   NOT NULL DEFAULT '[]',
    help       TEXT,
    position   BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT   NOT NULL,
    deleted_at BIGINT,
    deleted_by TEXT
);

-- Every database starts with the finance set (cmdb_model::custom_fields::FINANCE_SET).
INSERT INTO custom_fields (key, label, field_type, help, position, created_at, created_by) VALUES
    ('purchase_date', 'Purchase date', 'date', 'The date on the invoice.', 1, CAST(strftime('%s','now') AS INTEGER) * 1000000, 'cmdb'),
    ('purchase_cost', 'Purchase cost', 'decimal', 'Without tax, in the currency below.', 2, CAST(strftime('%s','now') AS INTEGER) * 1000000, 'cmdb'),
    ('currency', 'Currency', 'text', 'ISO 4217 code, e.g. CNY, EUR, USD.', 3, CAST(strftime('%s','now') AS INTEGER) * 1000000, 'cmdb'),
    ('supplier', 'Supplier', 'text', NULL, 4, CAST(strftime('%s','now') AS INTEGER) * 1000000, 'cmdb'),
    ('purchase_order', 'Purchase order', 'text', 'The PO number in the finance system.', 5, CAST(strftime('%s','now') AS INTEGER) * 1000000, 'cmdb'),
    ('warranty_end', 'Warranty end', 'date', 'Last day of the vendor warranty or support contract.', 6, CAST(strftime('%s','now') AS INTEGER) * 1000000, 'cmdb'),
    ('disposed_at', 'Disposed', 'date', 'When the asset left the books (sold, scrapped, returned).', 7, CAST(strftime('%s','now') AS INTEGER) * 1000000, 'cmdb');

-- Custom values as list columns, filters and sort keys: the business.custom object as canonical
-- JSON, kept in assets and in every asset version.
ALTER TABLE assets ADD COLUMN custom TEXT NOT NULL DEFAULT '{}';
ALTER TABLE asset_versions ADD COLUMN custom TEXT NOT NULL DEFAULT '{}';

-- Baselines: the old spreadsheet imported as the state on a date before cmdb knew the assets.
-- Append-only; a baseline writes no back-dated change. As of T, an asset with no change recorded
-- at or before T reads as its latest baseline effective at or before T (the one exception to
-- "as-of follows recorded time", see ARCHITECTURE.md).
CREATE TABLE baselines (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    asset_id     BIGINT NOT NULL REFERENCES assets (id),
    -- The instant the sheet describes (Unix µs).
    effective_at BIGINT NOT NULL,
    hostname     TEXT   NOT NULL,
    -- The business fields of the row (canonical JSON, as the business section stores them).
    fields       TEXT   NOT NULL,
    file_name    TEXT   NOT NULL,
    line         BIGINT NOT NULL,
    imported_at  BIGINT NOT NULL,
    imported_by  TEXT   NOT NULL
);
CREATE INDEX baselines_asset ON baselines (asset_id, effective_at);
CREATE INDEX baselines_effective ON baselines (effective_at);

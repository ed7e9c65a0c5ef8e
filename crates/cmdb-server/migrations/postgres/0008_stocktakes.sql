-- Stocktakes: the physical count. The expected list is frozen when a stocktake opens (with what the
-- record said then: host name, tag, serial, location), sightings are appended as people scan, and
-- the collection evidence is frozen when it closes, so a closed stocktake's report never changes.
CREATE TABLE stocktakes (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT   NOT NULL,
    -- The list filter that chose the expected assets, as JSON.
    scope      TEXT   NOT NULL,
    opened_at  BIGINT NOT NULL,
    opened_by  TEXT   NOT NULL,
    closed_at  BIGINT,
    closed_by  TEXT
);

CREATE TABLE stocktake_items (
    stocktake_id BIGINT NOT NULL REFERENCES stocktakes (id),
    asset_id     BIGINT NOT NULL,
    hostname     TEXT   NOT NULL,
    asset_tag    TEXT,
    serial       TEXT,
    idc          TEXT,
    cabinet      TEXT,
    cabinet_u    BIGINT,
    -- Set at close: an agent report was recorded for the asset since the stocktake opened.
    reported     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (stocktake_id, asset_id)
);

CREATE TABLE stocktake_sightings (
    id           BIGSERIAL PRIMARY KEY,
    stocktake_id BIGINT NOT NULL REFERENCES stocktakes (id),
    code         TEXT   NOT NULL,
    -- The asset the code found (after following merges), if any.
    asset_id     BIGINT,
    hostname     TEXT,
    idc          TEXT,
    cabinet      TEXT,
    cabinet_u    BIGINT,
    note         TEXT,
    -- verified, moved, unexpected, unknown or already_seen.
    outcome      TEXT   NOT NULL,
    seen_at      BIGINT NOT NULL,
    seen_by      TEXT   NOT NULL
);
CREATE INDEX stocktake_sightings_asset ON stocktake_sightings (stocktake_id, asset_id);

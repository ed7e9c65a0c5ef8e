-- Tamper evidence: each asset's change records form a SHA-256 hash chain (cmdb_model::chain).
-- `hash` covers the record's canonical content and `prev_hash`, the hash of the asset's record
-- before it (NULL for its first). Rows written before this migration get theirs from the
-- resumable backfill that runs right after migrations (SQLite has no SHA-256, so it is done in
-- Rust for both backends); until it has finished, `settings.chain_backfill` is not 'done'.
ALTER TABLE changes ADD COLUMN hash TEXT;
ALTER TABLE changes ADD COLUMN prev_hash TEXT;

-- When a request signed by an agent key was last accepted (the keys page shows it); written at
-- most once a minute per key so a busy agent does not turn every report into an extra write.
ALTER TABLE agent_keys ADD COLUMN last_used_at BIGINT;

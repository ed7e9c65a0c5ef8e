-- Every instance on this database caches agent keys for `key_cache_secs`. A change to what a key
-- may do (created, revoked, rotated, rebound, deleted) is announced on the channel
-- `cmdb_agent_keys` with the key id as payload, and each instance listening forgets that key at
-- once, so a key revoked through any instance (or the CLI, or a restore) is refused by all within
-- milliseconds. NOTIFY is delivered at commit, so nobody forgets a key before the change is
-- visible. `last_used_at` (written once a minute per key) is left out on purpose: it changes
-- nothing a request is checked against.
CREATE FUNCTION cmdb_announce_agent_key() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('cmdb_agent_keys', OLD.key_id);
    ELSE
        PERFORM pg_notify('cmdb_agent_keys', NEW.key_id);
        IF TG_OP = 'UPDATE' AND OLD.key_id <> NEW.key_id THEN
            PERFORM pg_notify('cmdb_agent_keys', OLD.key_id);
        END IF;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER agent_keys_announce
    AFTER INSERT OR DELETE OR UPDATE OF key_id, secret, scope, asset_id, revoked_at ON agent_keys
    FOR EACH ROW EXECUTE FUNCTION cmdb_announce_agent_key();

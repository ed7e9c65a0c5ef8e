-- Security hardening.

-- Failed logins repeat: one row per (action, actor, address) and window, with a count, so
-- unauthenticated traffic cannot grow the audit log faster than a small bounded rate.
ALTER TABLE audit_log ADD COLUMN repeats BIGINT NOT NULL DEFAULT 1;
ALTER TABLE audit_log ADD COLUMN last_at BIGINT;
CREATE INDEX audit_log_repeat ON audit_log (action, actor, client_ip, at);

-- Addresses each user logged in from: the per-user failure cap never blocks these.
CREATE TABLE login_addresses (
    user_id       BIGINT NOT NULL,
    address       TEXT   NOT NULL,
    last_login_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, address)
);

-- The per-user failure window (fixed, one hour) beside the backoff counters.
ALTER TABLE login_throttle ADD COLUMN window_start BIGINT NOT NULL DEFAULT 0;

-- An asset created because its first report could not be tied to an existing asset it may be
-- (a host key matching only by host name, a report collected for another target).
ALTER TABLE assets ADD COLUMN possible_duplicate_of BIGINT;

-- Webhooks: endpoints admins register, the durable outbox every write fills in its own
-- transaction (one row per subscribed endpoint and event), and the log of delivery attempts.
-- (0010 is taken by another branch; sqlx applies migrations in order, a gap is fine.)
CREATE TABLE webhook_endpoints (
    id                  BIGSERIAL PRIMARY KEY,
    url                 TEXT   NOT NULL,
    -- The HMAC secret, sealed under the key file (secrets::webhook_secret_label).
    secret_sealed       TEXT   NOT NULL,
    -- The event kinds it receives (1 = subscribed).
    on_change           BIGINT NOT NULL DEFAULT 0,
    on_collection_error BIGINT NOT NULL DEFAULT 0,
    on_stocktake_closed BIGINT NOT NULL DEFAULT 0,
    on_asset            BIGINT NOT NULL DEFAULT 0,
    -- 0 once delivery gave up (webhooks.give_up_after_secs): nothing more is queued or sent.
    enabled             BIGINT NOT NULL DEFAULT 1,
    disabled_at         BIGINT,
    disabled_reason     TEXT,
    created_at          BIGINT NOT NULL,
    created_by          TEXT   NOT NULL
);

CREATE TABLE webhook_outbox (
    id              BIGSERIAL PRIMARY KEY,
    -- No foreign key: a write that queues an event must never fail because an admin deleted the
    -- endpoint meanwhile (the delete removes its rows; a row it missed is never claimed, as its
    -- endpoint is gone, and the pruning task removes it).
    endpoint_id     BIGINT NOT NULL,
    -- The idempotency id: the same for every endpoint and every attempt of one event.
    event_id        TEXT   NOT NULL,
    kind            TEXT   NOT NULL,
    -- Delivery is in order per (endpoint, asset); 0 for events about no asset.
    asset_id        BIGINT NOT NULL,
    -- A change or asset event: the ids of the change records the write appended.
    first_change_id BIGINT,
    last_change_id  BIGINT,
    -- Any other event: its data, as JSON.
    payload         TEXT,
    created_at      BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    -- pending or delivered.
    state           TEXT   NOT NULL DEFAULT 'pending',
    -- A dispatcher holds the row until then (a killed instance's claims expire).
    lease_until     BIGINT,
    delivered_at    BIGINT
);
CREATE INDEX webhook_outbox_pending ON webhook_outbox (endpoint_id, asset_id, id) WHERE state = 'pending';
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_outbox_delivered ON webhook_outbox (delivered_at) WHERE state = 'delivered';

CREATE TABLE webhook_deliveries (
    id          BIGSERIAL PRIMARY KEY,
    -- No foreign key: an attempt that ends after its endpoint was deleted is still logged (and
    -- pruned with the log) rather than failing the dispatcher's transaction.
    endpoint_id BIGINT NOT NULL,
    event_id    TEXT   NOT NULL,
    kind        TEXT   NOT NULL,
    asset_id    BIGINT NOT NULL,
    attempt     BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    -- The receiver's HTTP status, or NULL when no answer came (then error says why).
    status      BIGINT,
    error       TEXT,
    duration_us BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_at ON webhook_deliveries (at);

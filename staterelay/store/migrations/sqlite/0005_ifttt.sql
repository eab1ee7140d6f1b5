-- IFTTT: trigger timelines, tracked temperature thresholds, trigger identities, action
-- request ids (idempotency of retried actions), the Realtime switch the fan-out reads, and
-- the output format of user webhooks (IFTTT's Webhooks service is one).

-- One row per event on a trigger timeline, written inside the change's transaction. uid is
-- IFTTT's meta.id: random, never reused. Devices may be deleted; their history stays.
CREATE TABLE ifttt_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uid TEXT NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    device_id TEXT NOT NULL,
    device_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    variant TEXT NOT NULL DEFAULT '',
    property TEXT,
    old_value TEXT,
    new_value TEXT,
    old_number REAL,
    new_number REAL,
    source_id INTEGER,
    cause TEXT,
    source TEXT,
    occurred_at REAL NOT NULL
);
-- A poll is one range of this index read backwards: newest first, LIMIT rows, no sort.
CREATE INDEX ifttt_events_timeline ON ifttt_events (tenant_id, device_id, kind, variant, id);

-- Thresholds somebody polls; the fan-out writes a crossing event for each one crossed.
CREATE TABLE ifttt_thresholds (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    device_id TEXT NOT NULL,
    variant TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('above', 'below')),
    threshold REAL NOT NULL,
    created_at REAL NOT NULL,
    last_polled_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, device_id, variant)
);

CREATE TABLE ifttt_trigger_identities (
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    identity TEXT NOT NULL,
    trigger_slug TEXT NOT NULL,
    fields TEXT NOT NULL,
    device_id TEXT,
    kind TEXT,
    direction TEXT,
    threshold REAL,
    created_at REAL NOT NULL,
    last_polled_at REAL NOT NULL,
    deleted_at REAL,
    PRIMARY KEY (tenant_id, user_id, identity),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX ifttt_identities_device ON ifttt_trigger_identities (tenant_id, device_id)
    WHERE deleted_at IS NULL;

CREATE TABLE ifttt_action_requests (
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    action_slug TEXT NOT NULL,
    request_id TEXT NOT NULL,
    result TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, user_id, action_slug, request_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX ifttt_action_requests_created ON ifttt_action_requests (created_at);

-- Written by the server at start: every process's fan-out (the CLI's too) follows it.
CREATE TABLE ifttt_realtime (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    enabled INTEGER NOT NULL,
    debounce_seconds REAL NOT NULL,
    updated_at REAL NOT NULL
);

ALTER TABLE webhooks ADD COLUMN format TEXT NOT NULL DEFAULT 'standard'
    CHECK (format IN ('standard', 'ifttt_webhooks'));
ALTER TABLE webhooks ADD COLUMN ifttt_event TEXT;
ALTER TABLE webhooks ADD COLUMN ifttt_key_ciphertext TEXT;

-- Ordered delivery. Every outbox row belongs to an ordering key (Alexa: grant + endpoint;
-- IFTTT Realtime: the user; webhooks: webhook + device). A row is handed to a sink only when
-- no older pending row of its key holds it back, so rows of one key reach their destination
-- in commit order and a row waiting for its retry (or being sent) holds back the rows behind
-- it. 'mergeable' rows (coalescable state changes, IFTTT Realtime nudges) that are due at the
-- same moment go together (see staterelay/core/delivery/keys.py).
--
-- A row now ends as 'delivered' (sent, with the status code in its activity entry),
-- 'merged' (a report sent for another row of its key carried its change: merged_into
-- names that row's event id) or 'dead'.
-- SQLite cannot change a CHECK constraint in place, so the table is rebuilt.
CREATE TABLE outbox_ordered (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    sink TEXT NOT NULL,
    destination TEXT NOT NULL,
    ordering_key TEXT NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    device_id TEXT,
    payload TEXT NOT NULL,
    mergeable INTEGER NOT NULL DEFAULT 0 CHECK (mergeable IN (0, 1)),
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'merged', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    lease_owner TEXT,
    lease_until REAL,
    last_error TEXT,
    merged_into TEXT,
    created_at REAL NOT NULL,
    finished_at REAL
);
INSERT INTO outbox_ordered (id, tenant_id, sink, destination, ordering_key, event_id,
    event_type, device_id, payload, status, attempts, next_attempt_at, lease_owner,
    lease_until, last_error, created_at, finished_at)
SELECT id, tenant_id, sink, destination,
    CASE sink
        WHEN 'ifttt' THEN sink || ':' || destination
        ELSE sink || ':' || destination || ':' || coalesce(device_id, '')
    END,
    event_id, event_type, device_id, payload, status, attempts, next_attempt_at, lease_owner,
    lease_until, last_error, created_at, finished_at
FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_ordered RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_destination ON outbox (sink, destination, next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX outbox_finished ON outbox (finished_at) WHERE status != 'pending';
-- The head of a key (its oldest pending row), and its tail for merging, in one probe each.
CREATE INDEX outbox_key ON outbox (ordering_key, id) WHERE status = 'pending';

-- The OAuth grant (linked app) whose token accepted the Alexa grant: revoking that linked
-- app ends the Alexa link too.
ALTER TABLE alexa_grants ADD COLUMN oauth_grant_id TEXT;

-- Facts the instance keeps about itself, such as which household it made for IFTTT's
-- endpoint tests (recognized by this marker, never by an e-mail address).
CREATE TABLE instance_markers (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at REAL NOT NULL
);

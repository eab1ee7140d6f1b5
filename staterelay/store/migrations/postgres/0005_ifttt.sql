-- IFTTT: trigger timelines, tracked temperature thresholds, trigger identities, action
-- request ids (idempotency of retried actions), the Realtime switch the fan-out reads, and
-- the output format of user webhooks (IFTTT's Webhooks service is one).

-- One row per event on a trigger timeline, written inside the change's transaction. uid is
-- IFTTT's meta.id: random, never reused. Devices may be deleted; their history stays.
CREATE TABLE ifttt_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uid text NOT NULL,
    tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    device_id text NOT NULL,
    device_name text NOT NULL,
    kind text NOT NULL,
    variant text NOT NULL DEFAULT '',
    property text,
    old_value jsonb,
    new_value jsonb,
    old_number double precision,
    new_number double precision,
    source_id bigint,
    cause text,
    source text,
    occurred_at double precision NOT NULL
);
-- A poll is one range of this index read backwards: newest first, LIMIT rows, no sort.
CREATE INDEX ifttt_events_timeline ON ifttt_events (tenant_id, device_id, kind, variant, id);
CREATE INDEX ifttt_events_occurred ON ifttt_events (occurred_at);
ALTER TABLE ifttt_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE ifttt_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ifttt_events
    USING (tenant_id = current_setting('app.tenant_id'))
    WITH CHECK (tenant_id = current_setting('app.tenant_id'));
CREATE POLICY owner_access ON ifttt_events TO CURRENT_ROLE USING (true) WITH CHECK (true);

-- Thresholds somebody polls; the fan-out writes a crossing event for each one crossed.
CREATE TABLE ifttt_thresholds (
    tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    device_id text NOT NULL,
    variant text NOT NULL,
    direction text NOT NULL CHECK (direction IN ('above', 'below')),
    threshold double precision NOT NULL,
    created_at double precision NOT NULL,
    last_polled_at double precision NOT NULL,
    PRIMARY KEY (tenant_id, device_id, variant)
);
ALTER TABLE ifttt_thresholds ENABLE ROW LEVEL SECURITY;
ALTER TABLE ifttt_thresholds FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ifttt_thresholds
    USING (tenant_id = current_setting('app.tenant_id'))
    WITH CHECK (tenant_id = current_setting('app.tenant_id'));
CREATE POLICY owner_access ON ifttt_thresholds TO CURRENT_ROLE USING (true) WITH CHECK (true);

CREATE TABLE ifttt_trigger_identities (
    tenant_id text NOT NULL,
    user_id text NOT NULL,
    identity text NOT NULL,
    trigger_slug text NOT NULL,
    fields jsonb NOT NULL,
    device_id text,
    kind text,
    direction text,
    threshold double precision,
    created_at double precision NOT NULL,
    last_polled_at double precision NOT NULL,
    deleted_at double precision,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (tenant_id, user_id, identity),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX ifttt_identities_device ON ifttt_trigger_identities (tenant_id, device_id)
    WHERE deleted_at IS NULL;
ALTER TABLE ifttt_trigger_identities ENABLE ROW LEVEL SECURITY;
ALTER TABLE ifttt_trigger_identities FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ifttt_trigger_identities
    USING (tenant_id = current_setting('app.tenant_id'))
    WITH CHECK (tenant_id = current_setting('app.tenant_id'));
CREATE POLICY owner_access ON ifttt_trigger_identities TO CURRENT_ROLE
    USING (true) WITH CHECK (true);

CREATE TABLE ifttt_action_requests (
    tenant_id text NOT NULL,
    user_id text NOT NULL,
    action_slug text NOT NULL,
    request_id text NOT NULL,
    result text NOT NULL,
    created_at double precision NOT NULL,
    PRIMARY KEY (tenant_id, user_id, action_slug, request_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX ifttt_action_requests_created ON ifttt_action_requests (created_at);
ALTER TABLE ifttt_action_requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE ifttt_action_requests FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ifttt_action_requests
    USING (tenant_id = current_setting('app.tenant_id'))
    WITH CHECK (tenant_id = current_setting('app.tenant_id'));
CREATE POLICY owner_access ON ifttt_action_requests TO CURRENT_ROLE
    USING (true) WITH CHECK (true);

-- Written by the server at start: every process's fan-out (the CLI's too) follows it.
CREATE TABLE ifttt_realtime (
    id integer PRIMARY KEY CHECK (id = 1),
    enabled boolean NOT NULL,
    debounce_seconds double precision NOT NULL,
    updated_at double precision NOT NULL
);

ALTER TABLE webhooks ADD COLUMN format text NOT NULL DEFAULT 'standard'
    CHECK (format IN ('standard', 'ifttt_webhooks'));
ALTER TABLE webhooks ADD COLUMN ifttt_event text;
ALTER TABLE webhooks ADD COLUMN ifttt_key_ciphertext text;

-- Retention across tenants: old timeline events, identities and thresholds nobody polls
-- any more, and old action request ids. Returns the four counts.
CREATE FUNCTION sr_prune_ifttt(
    p_events_before double precision,
    p_identities_before double precision,
    p_requests_before double precision,
    OUT events bigint, OUT identities bigint, OUT thresholds bigint, OUT requests bigint
)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
    DELETE FROM ifttt_events WHERE occurred_at < p_events_before;
    GET DIAGNOSTICS events = ROW_COUNT;
    DELETE FROM ifttt_trigger_identities
    WHERE last_polled_at < p_identities_before OR deleted_at < p_identities_before;
    GET DIAGNOSTICS identities = ROW_COUNT;
    DELETE FROM ifttt_thresholds WHERE last_polled_at < p_identities_before;
    GET DIAGNOSTICS thresholds = ROW_COUNT;
    DELETE FROM ifttt_action_requests WHERE created_at < p_requests_before;
    GET DIAGNOSTICS requests = ROW_COUNT;
END
$$;

REVOKE ALL ON FUNCTION sr_prune_ifttt(double precision, double precision, double precision)
    FROM PUBLIC;

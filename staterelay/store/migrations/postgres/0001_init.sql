-- StateRelay PostgreSQL schema, version 1: tenants, users, API keys, devices, activity,
-- webhooks and the outbox. Times are epoch seconds (double precision), as in the records.
--
-- Tenancy: every tenant table has row-level security, enabled and forced, with a policy
-- that shows and accepts only the rows of the tenant the transaction names with
-- set_config('app.tenant_id', ..., true). With no tenant named, current_setting() fails
-- (the setting does not exist) or reads '' (it existed earlier in the session): no rows.
-- The second policy lets the owner of the tables (who runs migrations and owns the sr_*
-- functions below) through; the app connects as another role and gets only the first.
-- Lookups that must cross tenants are SECURITY DEFINER functions, one narrow question each.

CREATE TABLE tenants (
    id text PRIMARY KEY,
    name text NOT NULL,
    created_at double precision NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE
);
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = current_setting('app.tenant_id')) WITH CHECK (id = current_setting('app.tenant_id'));
CREATE POLICY owner_access ON tenants TO CURRENT_ROLE USING (true) WITH CHECK (true);

CREATE TABLE users (
    id text PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    email text NOT NULL,
    email_key text NOT NULL CONSTRAINT users_email_unique UNIQUE,
    password_hash text,
    is_admin boolean NOT NULL DEFAULT false,
    created_at double precision NOT NULL,
    UNIQUE (tenant_id, id)
);
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON users
    USING (tenant_id = current_setting('app.tenant_id'))
    WITH CHECK (tenant_id = current_setting('app.tenant_id'));
CREATE POLICY owner_access ON users TO CURRENT_ROLE USING (true) WITH CHECK (true);

CREATE TABLE api_keys (
    id text PRIMARY KEY,
    tenant_id text NOT NULL,
    user_id text NOT NULL,
    name text NOT NULL,
    prefix text NOT NULL,
    digest text NOT NULL UNIQUE,
    scopes text[] NOT NULL,
    created_at double precision NOT NULL,
    last_used_at double precision,
    revoked_at double precision,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX api_keys_user ON api_keys (tenant_id, user_id);
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
    USING (tenant_id = current_setting('app.tenant_id'))
    WITH CHECK (tenant_id = current_setting('app.tenant_id'));
CREATE POLICY owner_access ON api_keys TO CURRENT_ROLE USING (true) WITH CHECK (true);

CREATE TABLE devices (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL CONSTRAINT devices_id_unique UNIQUE,
    tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    type text NOT NULL,
    name text NOT NULL,
    name_key text NOT NULL,
    description text NOT NULL DEFAULT '',
    options jsonb NOT NULL DEFAULT '{}',
    version integer NOT NULL DEFAULT 1,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    CONSTRAINT devices_name_unique UNIQUE (tenant_id, name_key),
    UNIQUE (tenant_id, id)
);
ALTER TABLE devices ENABLE ROW LEVEL SECURITY;
ALTER TABLE devices FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON devices
    USING (tenant_id = current_setting('app.tenant_id'))
    WITH CHECK (tenant_id = current_setting('app.tenant_id'));
CREATE POLICY owner_access ON devices TO CURRENT_ROLE USING (true) WITH CHECK (true);

CREATE TABLE device_properties (
    tenant_id text NOT NULL,
    device_id text NOT NULL,
    name text NOT NULL,
    value jsonb NOT NULL,
    changed_at double precision NOT NULL,
    PRIMARY KEY (tenant_id, device_id, name),
    FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id) ON DELETE CASCADE
);
ALTER TABLE device_properties ENABLE ROW LEVEL SECURITY;
ALTER TABLE device_properties FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON device_properties
    USING (tenant_id = current_setting('app.tenant_id'))
    WITH CHECK (tenant_id = current_setting('app.tenant_id'));
CREATE POLICY owner_access ON device_properties TO CURRENT_ROLE USING (true) WITH CHECK (true);

CREATE TABLE activity_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    device_id text,
    device_name text,
    kind text NOT NULL,
    source text NOT NULL,
    actor text,
    cause text,
    property text,
    old_value jsonb,
    new_value jsonb,
    detail jsonb NOT NULL DEFAULT '{}',
    created_at double precision NOT NULL
);
CREATE INDEX activity_tenant ON activity_log (tenant_id, id);
CREATE INDEX activity_device ON activity_log (tenant_id, device_id, id);
CREATE INDEX activity_created ON activity_log (created_at);
ALTER TABLE activity_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE activity_log FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON activity_log
    USING (tenant_id = current_setting('app.tenant_id'))
    WITH CHECK (tenant_id = current_setting('app.tenant_id'));
CREATE POLICY owner_access ON activity_log TO CURRENT_ROLE USING (true) WITH CHECK (true);

CREATE TABLE webhooks (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL UNIQUE,
    tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url text NOT NULL,
    description text NOT NULL DEFAULT '',
    device_ids text[],
    event_types text[],
    enabled boolean NOT NULL DEFAULT true,
    secret_ciphertext text NOT NULL,
    disabled_reason text,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    UNIQUE (tenant_id, id)
);
ALTER TABLE webhooks ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhooks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhooks
    USING (tenant_id = current_setting('app.tenant_id'))
    WITH CHECK (tenant_id = current_setting('app.tenant_id'));
CREATE POLICY owner_access ON webhooks TO CURRENT_ROLE USING (true) WITH CHECK (true);

CREATE TABLE webhook_deliveries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL,
    webhook_id text NOT NULL,
    event_id text NOT NULL,
    event_type text NOT NULL,
    attempt integer NOT NULL,
    status_code integer,
    error text,
    duration_ms double precision NOT NULL,
    created_at double precision NOT NULL,
    FOREIGN KEY (tenant_id, webhook_id) REFERENCES webhooks (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (tenant_id, webhook_id, id);
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);
ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_deliveries
    USING (tenant_id = current_setting('app.tenant_id'))
    WITH CHECK (tenant_id = current_setting('app.tenant_id'));
CREATE POLICY owner_access ON webhook_deliveries TO CURRENT_ROLE USING (true) WITH CHECK (true);

-- One row per event per destination. A replica leases the rows it sends (lease_owner,
-- lease_until); a row whose lease ran out (its replica died) is claimable again.
CREATE TABLE outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    sink text NOT NULL,
    destination text NOT NULL,
    event_id text NOT NULL UNIQUE,
    event_type text NOT NULL,
    device_id text,
    payload jsonb NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at double precision NOT NULL,
    lease_owner text,
    lease_until double precision,
    last_error text,
    created_at double precision NOT NULL,
    finished_at double precision
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_destination ON outbox (tenant_id, sink, destination, next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX outbox_finished ON outbox (finished_at) WHERE status <> 'pending';
CREATE INDEX outbox_lease_owner ON outbox (lease_owner) WHERE lease_owner IS NOT NULL;
ALTER TABLE outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON outbox
    USING (tenant_id = current_setting('app.tenant_id'))
    WITH CHECK (tenant_id = current_setting('app.tenant_id'));
CREATE POLICY owner_access ON outbox TO CURRENT_ROLE USING (true) WITH CHECK (true);

-- Cross-tenant questions ------------------------------------------------------------------
-- Each runs as the owner (SECURITY DEFINER) with a fixed search_path, and is executable
-- only by the roles the migration grants it to (never PUBLIC).

CREATE FUNCTION sr_first_tenant() RETURNS SETOF tenants
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT * FROM tenants ORDER BY created_at, seq LIMIT 1 $$;

CREATE FUNCTION sr_user_by_email(p_email_key text) RETURNS SETOF users
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT * FROM users WHERE email_key = p_email_key $$;

CREATE FUNCTION sr_count_users() RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT count(*) FROM users $$;

CREATE FUNCTION sr_api_key_by_digest(p_digest text) RETURNS SETOF api_keys
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT * FROM api_keys WHERE digest = p_digest $$;

-- Last-used times of keys, batched by the auth layer (key id -> time; never moves back).
CREATE FUNCTION sr_touch_api_keys(p_ids text[], p_times double precision[]) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    UPDATE api_keys k SET last_used_at = greatest(coalesce(k.last_used_at, 0), t.at)
    FROM unnest(p_ids, p_times) AS t (id, at) WHERE k.id = t.id
$$;

-- Retention: activity, finished outbox rows and delivery history older than a time.
CREATE FUNCTION sr_prune_activity(p_before double precision) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    removed bigint := 0;
    n bigint;
BEGIN
    DELETE FROM activity_log WHERE created_at < p_before;
    GET DIAGNOSTICS n = ROW_COUNT;
    removed := removed + n;
    DELETE FROM outbox WHERE status <> 'pending' AND finished_at < p_before;
    GET DIAGNOSTICS n = ROW_COUNT;
    removed := removed + n;
    DELETE FROM webhook_deliveries WHERE created_at < p_before;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN removed + n;
END
$$;

-- Lease up to p_limit due rows to p_owner, at most p_per_destination of one destination
-- (so one backlog cannot fill the batch). SKIP LOCKED passes over rows another replica is
-- claiming right now; the lease conditions are repeated on the locked rows because a row
-- leased and committed by another replica meanwhile is re-checked there, not in `ranked`.
CREATE FUNCTION sr_claim_outbox(
    p_owner text,
    p_now double precision,
    p_lease_until double precision,
    p_per_destination integer,
    p_limit integer
) RETURNS SETOF outbox
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    WITH ranked AS (
        SELECT id, row_number() OVER (
            PARTITION BY sink, destination ORDER BY next_attempt_at, id) AS place
        FROM outbox
        WHERE status = 'pending' AND next_attempt_at <= p_now
            AND (lease_until IS NULL OR lease_until < p_now)
    ), picked AS (
        SELECT o.id FROM outbox o
        WHERE o.id IN (SELECT id FROM ranked WHERE place <= p_per_destination)
            AND o.status = 'pending' AND o.next_attempt_at <= p_now
            AND (o.lease_until IS NULL OR o.lease_until < p_now)
        ORDER BY o.next_attempt_at, o.id
        LIMIT p_limit
        FOR UPDATE OF o SKIP LOCKED
    )
    UPDATE outbox SET lease_owner = p_owner, lease_until = p_lease_until
    FROM picked WHERE outbox.id = picked.id
    RETURNING outbox.*
$$;

-- Free one replica's leases (at shutdown), or only leases that already ran out (p_owner
-- NULL): a live replica's lease is never taken from it.
CREATE FUNCTION sr_release_leases(p_owner text, p_now double precision) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    IF p_owner IS NULL THEN
        UPDATE outbox SET lease_owner = NULL, lease_until = NULL
        WHERE lease_owner IS NOT NULL AND lease_until < p_now;
    ELSE
        UPDATE outbox SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = p_owner;
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

CREATE FUNCTION sr_outbox_next_due() RETURNS double precision
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT min(greatest(next_attempt_at, coalesce(lease_until, 0)))
    FROM outbox WHERE status = 'pending'
$$;

CREATE FUNCTION sr_outbox_stats(
    OUT pending bigint, OUT dead bigint, OUT oldest_pending_at double precision
)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT count(*) FILTER (WHERE status = 'pending'),
        count(*) FILTER (WHERE status = 'dead'),
        min(created_at) FILTER (WHERE status = 'pending')
    FROM outbox WHERE status IN ('pending', 'dead')
$$;

REVOKE ALL ON FUNCTION sr_first_tenant() FROM PUBLIC;
REVOKE ALL ON FUNCTION sr_user_by_email(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION sr_count_users() FROM PUBLIC;
REVOKE ALL ON FUNCTION sr_api_key_by_digest(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION sr_touch_api_keys(text[], double precision[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION sr_prune_activity(double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION sr_claim_outbox(text, double precision, double precision, integer, integer)
    FROM PUBLIC;
REVOKE ALL ON FUNCTION sr_release_leases(text, double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION sr_outbox_next_due() FROM PUBLIC;
REVOKE ALL ON FUNCTION sr_outbox_stats() FROM PUBLIC;

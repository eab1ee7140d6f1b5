-- Hosted billing: one subscription row per household (its Stripe customer and subscription
-- as last synced, and the plan whose limits were last enforced), the Stripe events already
-- processed, monthly usage counts and the devices suspended for being over a plan's limit.
-- Nothing here is ever written while billing.enabled is false. Every table is held to its
-- tenant by row-level security; the webhook's one cross-tenant question (which household is
-- this Stripe customer's) is sr_billing_customer_tenant.

CREATE TABLE subscriptions (
    tenant_id text PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    stripe_customer_id text UNIQUE,
    stripe_subscription_id text,
    plan_key text NOT NULL,
    status text NOT NULL,
    current_period_end double precision,
    cancel_at_period_end boolean NOT NULL DEFAULT false,
    past_due_since double precision,
    enforced_plan text,
    kept_devices jsonb NOT NULL DEFAULT '[]',
    updated_at double precision NOT NULL
);
ALTER TABLE subscriptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE subscriptions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON subscriptions
    USING (tenant_id = current_setting('app.tenant_id'))
    WITH CHECK (tenant_id = current_setting('app.tenant_id'));
CREATE POLICY owner_access ON subscriptions TO CURRENT_ROLE USING (true) WITH CHECK (true);

CREATE TABLE stripe_events (
    id text PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    processed_at double precision NOT NULL
);
CREATE INDEX stripe_events_tenant ON stripe_events (tenant_id);
ALTER TABLE stripe_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE stripe_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON stripe_events
    USING (tenant_id = current_setting('app.tenant_id'))
    WITH CHECK (tenant_id = current_setting('app.tenant_id'));
CREATE POLICY owner_access ON stripe_events TO CURRENT_ROLE USING (true) WITH CHECK (true);

CREATE TABLE usage_monthly (
    tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    month text NOT NULL,
    state_changes bigint NOT NULL DEFAULT 0,
    deliveries bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, month)
);
ALTER TABLE usage_monthly ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_monthly FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage_monthly
    USING (tenant_id = current_setting('app.tenant_id'))
    WITH CHECK (tenant_id = current_setting('app.tenant_id'));
CREATE POLICY owner_access ON usage_monthly TO CURRENT_ROLE USING (true) WITH CHECK (true);

CREATE TABLE device_suspensions (
    tenant_id text NOT NULL,
    device_id text NOT NULL,
    suspended_at double precision NOT NULL,
    PRIMARY KEY (tenant_id, device_id),
    FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id) ON DELETE CASCADE
);
ALTER TABLE device_suspensions ENABLE ROW LEVEL SECURITY;
ALTER TABLE device_suspensions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON device_suspensions
    USING (tenant_id = current_setting('app.tenant_id'))
    WITH CHECK (tenant_id = current_setting('app.tenant_id'));
CREATE POLICY owner_access ON device_suspensions TO CURRENT_ROLE USING (true) WITH CHECK (true);

-- A Stripe webhook names a customer, never a household: the one cross-tenant read billing
-- makes. It answers a tenant id and nothing else.
CREATE FUNCTION sr_billing_customer_tenant(p_customer text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT tenant_id FROM subscriptions WHERE stripe_customer_id = p_customer $$;

REVOKE ALL ON FUNCTION sr_billing_customer_tenant(text) FROM PUBLIC;

-- Each plan keeps activity for its own number of days: one sweep across households, like
-- sr_prune_activity, with the cut-off of each household's enforced plan (p_default for a
-- household without a billing row).
CREATE FUNCTION sr_prune_activity_by_plan(
    p_plans text[], p_before double precision[], p_default double precision
) RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    WITH cut AS (SELECT * FROM unnest(p_plans, p_before) AS c (plan, before)),
    gone AS (
        DELETE FROM activity_log a WHERE a.created_at < coalesce((
            SELECT cut.before FROM subscriptions s JOIN cut ON cut.plan = s.enforced_plan
            WHERE s.tenant_id = a.tenant_id), p_default)
        RETURNING 1
    )
    SELECT count(*) FROM gone
$$;

REVOKE ALL ON FUNCTION sr_prune_activity_by_plan(text[], double precision[], double precision)
    FROM PUBLIC;

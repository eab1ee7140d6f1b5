-- Hosted billing: one subscription row per household (its Stripe customer and subscription
-- as last synced, and the plan whose limits were last enforced), the Stripe events already
-- processed, monthly usage counts and the devices suspended for being over a plan's limit.
-- Nothing here is ever written while billing.enabled is false.

CREATE TABLE subscriptions (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    stripe_customer_id TEXT UNIQUE,
    stripe_subscription_id TEXT,
    plan_key TEXT NOT NULL,
    status TEXT NOT NULL,
    current_period_end REAL,
    cancel_at_period_end INTEGER NOT NULL DEFAULT 0,
    past_due_since REAL,
    enforced_plan TEXT,
    kept_devices TEXT NOT NULL DEFAULT '[]',
    updated_at REAL NOT NULL
);

CREATE TABLE stripe_events (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    processed_at REAL NOT NULL
);
CREATE INDEX stripe_events_tenant ON stripe_events (tenant_id);

CREATE TABLE usage_monthly (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    month TEXT NOT NULL,
    state_changes INTEGER NOT NULL DEFAULT 0,
    deliveries INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, month)
);

CREATE TABLE device_suspensions (
    tenant_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    suspended_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, device_id),
    FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id) ON DELETE CASCADE
);

-- The Alexa integration: one Login with Amazon grant per user, from AcceptGrant.
-- The LWA access and refresh tokens are encrypted at rest (AES-GCM, a key derived from the
-- instance secret). A grant the user ended (skill disabled, LWA refused the refresh token)
-- is kept without its tokens, so the user can see why Alexa stopped getting updates.

CREATE TABLE alexa_grants (
    id text PRIMARY KEY,
    tenant_id text NOT NULL,
    user_id text NOT NULL,
    region text NOT NULL CHECK (region IN ('NA', 'EU', 'FE')),
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'unlinked')),
    access_token_ciphertext text,
    refresh_token_ciphertext text,
    token_expires_at double precision,
    linked_at double precision NOT NULL,
    refreshed_at double precision,
    token_error text,
    token_error_at double precision,
    last_report_at double precision,
    last_report_status integer,
    last_report_error text,
    unlinked_at double precision,
    unlinked_reason text,
    UNIQUE (tenant_id, user_id),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
-- Every device change looks up the tenant's active grants inside its transaction.
CREATE INDEX alexa_grants_active ON alexa_grants (tenant_id) WHERE status = 'active';
ALTER TABLE alexa_grants ENABLE ROW LEVEL SECURITY;
ALTER TABLE alexa_grants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON alexa_grants
    USING (tenant_id = current_setting('app.tenant_id'))
    WITH CHECK (tenant_id = current_setting('app.tenant_id'));
CREATE POLICY owner_access ON alexa_grants TO CURRENT_ROLE USING (true) WITH CHECK (true);

-- The Alexa integration: one Login with Amazon grant per user, from AcceptGrant.
-- The LWA access and refresh tokens are encrypted at rest (AES-GCM, a key derived from the
-- instance secret). A grant the user ended (skill disabled, LWA refused the refresh token)
-- is kept without its tokens, so the user can see why Alexa stopped getting updates.

CREATE TABLE alexa_grants (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    region TEXT NOT NULL CHECK (region IN ('NA', 'EU', 'FE')),
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'unlinked')),
    access_token_ciphertext TEXT,
    refresh_token_ciphertext TEXT,
    token_expires_at REAL,
    linked_at REAL NOT NULL,
    refreshed_at REAL,
    token_error TEXT,
    token_error_at REAL,
    last_report_at REAL,
    last_report_status INTEGER,
    last_report_error TEXT,
    unlinked_at REAL,
    unlinked_reason TEXT,
    UNIQUE (tenant_id, user_id),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
-- Every device change looks up the tenant's active grants inside its transaction.
CREATE INDEX alexa_grants_active ON alexa_grants (tenant_id) WHERE status = 'active';

-- The OAuth 2.0 authorization server: clients (instance-wide), codes, grants and tokens.
-- Client secrets, codes and tokens are kept only as SHA-256 digests.

CREATE TABLE oauth_clients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_digest TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    token_endpoint_auth_method TEXT NOT NULL
        CHECK (token_endpoint_auth_method IN ('client_secret_basic', 'client_secret_post')),
    scopes TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('config', 'cli')),
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);

-- One user's authorization of one client; every token of a link belongs to one grant.
CREATE TABLE oauth_grants (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    scopes TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_used_at REAL,
    revoked_at REAL,
    revoked_reason TEXT,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX oauth_grants_user ON oauth_grants (tenant_id, user_id);

-- grant_id names the grant a code's exchange created, so a reused code revokes it.
CREATE TABLE oauth_codes (
    digest TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    redirect_uri TEXT NOT NULL,
    redirect_uri_given INTEGER NOT NULL,
    scopes TEXT NOT NULL,
    code_challenge TEXT,
    code_challenge_method TEXT,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL,
    grant_id TEXT,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX oauth_codes_expires ON oauth_codes (expires_at);

-- successor: the token pair a refresh issued for this refresh token, encrypted, kept only
-- for the grace window so a retried refresh gets the same pair.
CREATE TABLE oauth_tokens (
    digest TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('access', 'refresh')),
    tenant_id TEXT NOT NULL,
    grant_id TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL,
    rotated_at REAL,
    successor TEXT,
    FOREIGN KEY (tenant_id, grant_id) REFERENCES oauth_grants (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX oauth_tokens_grant ON oauth_tokens (tenant_id, grant_id);
CREATE INDEX oauth_tokens_expires ON oauth_tokens (expires_at) WHERE kind = 'access';
CREATE INDEX oauth_tokens_successor ON oauth_tokens (rotated_at) WHERE successor IS NOT NULL;

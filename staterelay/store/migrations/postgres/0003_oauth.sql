-- The OAuth 2.0 authorization server: clients (instance-wide), codes, grants and tokens.
-- Client secrets, codes and tokens are kept only as SHA-256 digests.

CREATE TABLE oauth_clients (
    id text PRIMARY KEY,
    name text NOT NULL,
    secret_digest text NOT NULL,
    redirect_uris text[] NOT NULL,
    token_endpoint_auth_method text NOT NULL
        CHECK (token_endpoint_auth_method IN ('client_secret_basic', 'client_secret_post')),
    scopes text[] NOT NULL,
    source text NOT NULL CHECK (source IN ('config', 'cli')),
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY
);

-- One user's authorization of one client; every token of a link belongs to one grant.
CREATE TABLE oauth_grants (
    id text PRIMARY KEY,
    tenant_id text NOT NULL,
    user_id text NOT NULL,
    client_id text NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    scopes text[] NOT NULL,
    created_at double precision NOT NULL,
    last_used_at double precision,
    revoked_at double precision,
    revoked_reason text,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX oauth_grants_user ON oauth_grants (tenant_id, user_id);
CREATE INDEX oauth_grants_client ON oauth_grants (client_id);
ALTER TABLE oauth_grants ENABLE ROW LEVEL SECURITY;
ALTER TABLE oauth_grants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON oauth_grants
    USING (tenant_id = current_setting('app.tenant_id'))
    WITH CHECK (tenant_id = current_setting('app.tenant_id'));
CREATE POLICY owner_access ON oauth_grants TO CURRENT_ROLE USING (true) WITH CHECK (true);

-- grant_id names the grant a code's exchange created, so a reused code revokes it.
CREATE TABLE oauth_codes (
    digest text PRIMARY KEY,
    tenant_id text NOT NULL,
    user_id text NOT NULL,
    client_id text NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    redirect_uri text NOT NULL,
    redirect_uri_given boolean NOT NULL,
    scopes text[] NOT NULL,
    code_challenge text,
    code_challenge_method text,
    created_at double precision NOT NULL,
    expires_at double precision NOT NULL,
    used_at double precision,
    grant_id text,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX oauth_codes_expires ON oauth_codes (expires_at);
CREATE INDEX oauth_codes_client ON oauth_codes (client_id);
ALTER TABLE oauth_codes ENABLE ROW LEVEL SECURITY;
ALTER TABLE oauth_codes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON oauth_codes
    USING (tenant_id = current_setting('app.tenant_id'))
    WITH CHECK (tenant_id = current_setting('app.tenant_id'));
CREATE POLICY owner_access ON oauth_codes TO CURRENT_ROLE USING (true) WITH CHECK (true);

-- successor: the token pair a refresh issued for this refresh token, encrypted, kept only
-- for the grace window so a retried refresh gets the same pair.
CREATE TABLE oauth_tokens (
    digest text PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('access', 'refresh')),
    tenant_id text NOT NULL,
    grant_id text NOT NULL,
    scopes text[] NOT NULL,
    created_at double precision NOT NULL,
    expires_at double precision,
    revoked_at double precision,
    rotated_at double precision,
    successor text,
    FOREIGN KEY (tenant_id, grant_id) REFERENCES oauth_grants (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX oauth_tokens_grant ON oauth_tokens (tenant_id, grant_id);
CREATE INDEX oauth_tokens_expires ON oauth_tokens (expires_at) WHERE kind = 'access';
CREATE INDEX oauth_tokens_successor ON oauth_tokens (rotated_at) WHERE successor IS NOT NULL;
ALTER TABLE oauth_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE oauth_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON oauth_tokens
    USING (tenant_id = current_setting('app.tenant_id'))
    WITH CHECK (tenant_id = current_setting('app.tenant_id'));
CREATE POLICY owner_access ON oauth_tokens TO CURRENT_ROLE USING (true) WITH CHECK (true);

-- A code or token names its own tenant: these say which, and nothing else. The store
-- then binds that tenant and does the work under row-level security.
CREATE FUNCTION sr_oauth_code_tenant(p_digest text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT tenant_id FROM oauth_codes WHERE digest = p_digest $$;

CREATE FUNCTION sr_oauth_token_tenant(p_digest text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT tenant_id FROM oauth_tokens WHERE digest = p_digest $$;

-- Last-used times of grants, batched (grant id -> time; never moves back).
CREATE FUNCTION sr_touch_oauth_grants(p_ids text[], p_times double precision[]) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    UPDATE oauth_grants g SET last_used_at = greatest(coalesce(g.last_used_at, 0), t.at)
    FROM unnest(p_ids, p_times) AS t (id, at) WHERE g.id = t.id
$$;

-- Housekeeping: successor pairs past the grace window, expired codes and access tokens.
CREATE FUNCTION sr_purge_oauth(p_successors_before double precision,
    p_expired_before double precision) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    changed bigint := 0;
    n bigint;
BEGIN
    UPDATE oauth_tokens SET successor = NULL
    WHERE successor IS NOT NULL AND rotated_at < p_successors_before;
    GET DIAGNOSTICS n = ROW_COUNT;
    changed := changed + n;
    DELETE FROM oauth_codes WHERE expires_at < p_expired_before;
    GET DIAGNOSTICS n = ROW_COUNT;
    changed := changed + n;
    DELETE FROM oauth_tokens WHERE kind = 'access' AND expires_at < p_expired_before;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN changed + n;
END
$$;

REVOKE ALL ON FUNCTION sr_oauth_code_tenant(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION sr_oauth_token_tenant(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION sr_touch_oauth_grants(text[], double precision[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION sr_purge_oauth(double precision, double precision) FROM PUBLIC;

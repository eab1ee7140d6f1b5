-- StateRelay PostgreSQL schema, version 2: browser sessions, invite links and instance facts.
-- Secrets (session cookies, invite and setup tokens) are stored only as SHA-256 digests.

CREATE TABLE sessions (
    id text PRIMARY KEY,
    tenant_id text NOT NULL,
    user_id text NOT NULL,
    digest text NOT NULL UNIQUE,
    created_at double precision NOT NULL,
    last_seen_at double precision NOT NULL,
    expires_at double precision NOT NULL,
    ip text NOT NULL DEFAULT '',
    user_agent text NOT NULL DEFAULT '',
    seq bigint GENERATED ALWAYS AS IDENTITY,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX sessions_user ON sessions (tenant_id, user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);
CREATE INDEX sessions_last_seen ON sessions (last_seen_at);
ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sessions
    USING (tenant_id = current_setting('app.tenant_id'))
    WITH CHECK (tenant_id = current_setting('app.tenant_id'));
CREATE POLICY owner_access ON sessions TO CURRENT_ROLE USING (true) WITH CHECK (true);

CREATE TABLE invites (
    id text PRIMARY KEY,
    tenant_id text NOT NULL,
    created_by text NOT NULL,
    digest text NOT NULL UNIQUE,
    created_at double precision NOT NULL,
    expires_at double precision NOT NULL,
    used_at double precision,
    used_by text,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, created_by) REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, used_by) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX invites_tenant ON invites (tenant_id, created_at);
ALTER TABLE invites ENABLE ROW LEVEL SECURITY;
ALTER TABLE invites FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invites
    USING (tenant_id = current_setting('app.tenant_id'))
    WITH CHECK (tenant_id = current_setting('app.tenant_id'));
CREATE POLICY owner_access ON invites TO CURRENT_ROLE USING (true) WITH CHECK (true);

-- Instance-wide facts that belong to no tenant (the setup token's digest, say).
CREATE TABLE instance_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);

-- A session cookie names its own tenant: the session and its user, by digest.
CREATE FUNCTION sr_session_by_digest(p_digest text)
RETURNS TABLE (
    id text, tenant_id text, user_id text, created_at double precision,
    last_seen_at double precision, expires_at double precision, ip text, user_agent text,
    u_id text, u_tenant_id text, u_email text, u_is_admin boolean,
    u_created_at double precision, u_password_hash text
)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT s.id, s.tenant_id, s.user_id, s.created_at, s.last_seen_at, s.expires_at, s.ip,
        s.user_agent, u.id, u.tenant_id, u.email, u.is_admin, u.created_at, u.password_hash
    FROM sessions s JOIN users u ON u.tenant_id = s.tenant_id AND u.id = s.user_id
    WHERE s.digest = p_digest
$$;

CREATE FUNCTION sr_prune_sessions(p_idle_before double precision, p_now double precision)
RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM sessions WHERE last_seen_at < p_idle_before OR expires_at <= p_now
        RETURNING 1
    )
    SELECT count(*) FROM gone
$$;

-- An invite link names its own tenant.
CREATE FUNCTION sr_invite_by_digest(p_digest text) RETURNS SETOF invites
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT * FROM invites WHERE digest = p_digest $$;

REVOKE ALL ON FUNCTION sr_session_by_digest(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION sr_prune_sessions(double precision, double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION sr_invite_by_digest(text) FROM PUBLIC;

-- StateRelay PostgreSQL schema, version 9: a room per device, and one-time password reset
-- links (only the token's SHA-256 digest is kept).

ALTER TABLE devices ADD COLUMN room text NOT NULL DEFAULT '';
CREATE INDEX devices_room ON devices (tenant_id, room);

CREATE TABLE password_resets (
    id text PRIMARY KEY,
    tenant_id text NOT NULL,
    user_id text NOT NULL,
    digest text NOT NULL UNIQUE,
    created_by text,
    created_at double precision NOT NULL,
    expires_at double precision NOT NULL,
    used_at double precision,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX password_resets_user ON password_resets (tenant_id, user_id);
CREATE INDEX password_resets_expires ON password_resets (expires_at);
ALTER TABLE password_resets ENABLE ROW LEVEL SECURITY;
ALTER TABLE password_resets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON password_resets
    USING (tenant_id = current_setting('app.tenant_id'))
    WITH CHECK (tenant_id = current_setting('app.tenant_id'));
CREATE POLICY owner_access ON password_resets TO CURRENT_ROLE USING (true) WITH CHECK (true);

-- A reset link names its own tenant: the reset, by digest, before the tenant is known.
CREATE FUNCTION sr_password_reset_by_digest(p_digest text) RETURNS SETOF password_resets
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT * FROM password_resets WHERE digest = p_digest $$;

REVOKE ALL ON FUNCTION sr_password_reset_by_digest(text) FROM PUBLIC;

-- `staterelay user list`: every user of the instance, whatever the tenant (the command line
-- only; the app role may call it, as it may read any user by email to sign in).
CREATE FUNCTION sr_list_users()
RETURNS TABLE (
    id text, tenant_id text, email text, is_admin boolean, created_at double precision,
    password_hash text
)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT id, tenant_id, email, is_admin, created_at, password_hash FROM users
    ORDER BY created_at, id
$$;

REVOKE ALL ON FUNCTION sr_list_users() FROM PUBLIC;

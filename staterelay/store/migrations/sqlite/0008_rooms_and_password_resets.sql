-- StateRelay schema, version 8: a room per device, and one-time password reset links.

-- A device's room ('' for none); the household's room list is the set of its devices' rooms.
ALTER TABLE devices ADD COLUMN room TEXT NOT NULL DEFAULT '';
CREATE INDEX devices_room ON devices (tenant_id, room);

-- Reset links: made by an admin for a member, or e-mailed on "Forgot password?". Only the
-- token's SHA-256 digest is kept; a link is used once and expires.
CREATE TABLE password_resets (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    created_by TEXT,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX password_resets_user ON password_resets (tenant_id, user_id);
CREATE INDEX password_resets_expires ON password_resets (expires_at);

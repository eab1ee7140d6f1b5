-- Integration records: what an integration keeps per household, generically. A record is
-- keyed by household, integration name, kind and key, and holds JSON data with its times
-- (Google Home keeps a "link" record per linked user). Records of kind "link" are the
-- integration links in the interest facts: adding, removing or re-keying one moves the
-- household's interest_version; changing only its data does not.

CREATE TABLE integration_records (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    integration TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, integration, kind, key)
) WITHOUT ROWID;

CREATE TRIGGER integration_links_interest_insert AFTER INSERT ON integration_records
WHEN NEW.kind = 'link'
BEGIN
    UPDATE tenants SET interest_version = interest_version + 1 WHERE id = NEW.tenant_id;
END;

CREATE TRIGGER integration_links_interest_delete AFTER DELETE ON integration_records
WHEN OLD.kind = 'link'
BEGIN
    UPDATE tenants SET interest_version = interest_version + 1 WHERE id = OLD.tenant_id;
END;

CREATE TRIGGER integration_links_interest_update
AFTER UPDATE OF integration, kind, key ON integration_records
WHEN OLD.kind = 'link' OR NEW.kind = 'link'
BEGIN
    UPDATE tenants SET interest_version = interest_version + 1 WHERE id = NEW.tenant_id;
END;

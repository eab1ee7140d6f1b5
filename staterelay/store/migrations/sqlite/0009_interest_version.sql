-- Interest facts: what a household's changes must be delivered to (linked Alexa accounts,
-- webhooks and their filters, IFTTT links, trigger identities and thresholds). Core plans
-- each change from them; the store keeps them in memory while the household's
-- interest_version stays the same, and these triggers move it whenever one of the rows
-- behind the facts is added, removed or changed in a way the facts show.
ALTER TABLE tenants ADD COLUMN interest_version INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER alexa_grants_interest_insert AFTER INSERT ON alexa_grants
BEGIN
    UPDATE tenants SET interest_version = interest_version + 1 WHERE id = NEW.tenant_id;
END;

CREATE TRIGGER alexa_grants_interest_delete AFTER DELETE ON alexa_grants
BEGIN
    UPDATE tenants SET interest_version = interest_version + 1 WHERE id = OLD.tenant_id;
END;

CREATE TRIGGER alexa_grants_interest_update AFTER UPDATE OF status ON alexa_grants
BEGIN
    UPDATE tenants SET interest_version = interest_version + 1 WHERE id = NEW.tenant_id;
END;

CREATE TRIGGER webhooks_interest_insert AFTER INSERT ON webhooks
BEGIN
    UPDATE tenants SET interest_version = interest_version + 1 WHERE id = NEW.tenant_id;
END;

CREATE TRIGGER webhooks_interest_delete AFTER DELETE ON webhooks
BEGIN
    UPDATE tenants SET interest_version = interest_version + 1 WHERE id = OLD.tenant_id;
END;

CREATE TRIGGER webhooks_interest_update AFTER UPDATE OF enabled, event_types, device_ids ON webhooks
BEGIN
    UPDATE tenants SET interest_version = interest_version + 1 WHERE id = NEW.tenant_id;
END;

CREATE TRIGGER ifttt_trigger_identities_interest_insert AFTER INSERT ON ifttt_trigger_identities
BEGIN
    UPDATE tenants SET interest_version = interest_version + 1 WHERE id = NEW.tenant_id;
END;

CREATE TRIGGER ifttt_trigger_identities_interest_delete AFTER DELETE ON ifttt_trigger_identities
BEGIN
    UPDATE tenants SET interest_version = interest_version + 1 WHERE id = OLD.tenant_id;
END;

CREATE TRIGGER ifttt_trigger_identities_interest_update AFTER UPDATE OF user_id, device_id, kind, direction, threshold, deleted_at ON ifttt_trigger_identities
BEGIN
    UPDATE tenants SET interest_version = interest_version + 1 WHERE id = NEW.tenant_id;
END;

CREATE TRIGGER ifttt_thresholds_interest_insert AFTER INSERT ON ifttt_thresholds
BEGIN
    UPDATE tenants SET interest_version = interest_version + 1 WHERE id = NEW.tenant_id;
END;

CREATE TRIGGER ifttt_thresholds_interest_delete AFTER DELETE ON ifttt_thresholds
BEGIN
    UPDATE tenants SET interest_version = interest_version + 1 WHERE id = OLD.tenant_id;
END;

CREATE TRIGGER oauth_grants_interest_insert AFTER INSERT ON oauth_grants
BEGIN
    UPDATE tenants SET interest_version = interest_version + 1 WHERE id = NEW.tenant_id;
END;

CREATE TRIGGER oauth_grants_interest_delete AFTER DELETE ON oauth_grants
BEGIN
    UPDATE tenants SET interest_version = interest_version + 1 WHERE id = OLD.tenant_id;
END;

CREATE TRIGGER oauth_grants_interest_update AFTER UPDATE OF revoked_at, scopes ON oauth_grants
BEGIN
    UPDATE tenants SET interest_version = interest_version + 1 WHERE id = NEW.tenant_id;
END;

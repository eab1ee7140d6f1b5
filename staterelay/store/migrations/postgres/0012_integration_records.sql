-- Integration records: what an integration keeps per household, generically. A record is
-- keyed by household, integration name, kind and key, and holds JSON data with its times
-- (Google Home keeps a "link" record per linked user). Records of kind 'link' are the
-- integration links in the interest facts: adding, removing or re-keying one moves the
-- household's interest_version (changing only its data does not), and sr_interest_facts_of
-- reads them with the other facts, in the same round trip.

CREATE TABLE integration_records (
    tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    integration text NOT NULL,
    kind text NOT NULL,
    key text NOT NULL,
    data jsonb NOT NULL DEFAULT '{}',
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    PRIMARY KEY (tenant_id, integration, kind, key)
);
ALTER TABLE integration_records ENABLE ROW LEVEL SECURITY;
ALTER TABLE integration_records FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON integration_records
    USING (tenant_id = current_setting('app.tenant_id'))
    WITH CHECK (tenant_id = current_setting('app.tenant_id'));
CREATE POLICY owner_access ON integration_records TO CURRENT_ROLE USING (true) WITH CHECK (true);

CREATE FUNCTION sr_bump_links() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.kind = 'link' THEN
        UPDATE tenants SET interest_version = interest_version + 1 WHERE id = OLD.tenant_id;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.kind = 'link' THEN
        UPDATE tenants SET interest_version = interest_version + 1 WHERE id = NEW.tenant_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER integration_links_interest AFTER INSERT OR DELETE
    OR UPDATE OF integration, kind, key
    ON integration_records FOR EACH ROW EXECUTE FUNCTION sr_bump_links();

-- The household's interest facts now carry its integration links: (integration, key) pairs.
CREATE OR REPLACE FUNCTION sr_interest_facts_of(p_tenant text) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = public, pg_temp
AS $$
    SELECT jsonb_build_object(
        'version', sr_facts_version(p_tenant),
        'alexa_grants', coalesce((
            SELECT jsonb_agg(id ORDER BY id) FROM alexa_grants
            WHERE tenant_id = p_tenant AND status = 'active'), '[]'),
        'webhooks', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                'id', id, 'event_types', to_jsonb(event_types), 'device_ids', to_jsonb(device_ids))
                ORDER BY seq)
            FROM webhooks WHERE tenant_id = p_tenant AND enabled), '[]'),
        'ifttt_linked', linked.yes,
        'watches', CASE WHEN linked.yes THEN coalesce((
            SELECT jsonb_agg(jsonb_build_array(
                user_id, identity, device_id, kind, direction, threshold) ORDER BY identity)
            FROM ifttt_trigger_identities
            WHERE tenant_id = p_tenant AND deleted_at IS NULL), '[]') ELSE '[]' END,
        'thresholds', CASE WHEN linked.yes THEN coalesce((
            SELECT jsonb_agg(jsonb_build_array(device_id, direction, threshold)
                ORDER BY device_id, variant)
            FROM ifttt_thresholds WHERE tenant_id = p_tenant), '[]') ELSE '[]' END,
        'realtime', (SELECT jsonb_build_array(enabled, debounce_seconds)
            FROM ifttt_realtime WHERE id = 1),
        'links', coalesce((
            SELECT jsonb_agg(jsonb_build_array(integration, key) ORDER BY integration, key)
            FROM integration_records WHERE tenant_id = p_tenant AND kind = 'link'), '[]'))
    FROM (SELECT EXISTS (
            SELECT 1 FROM oauth_grants g JOIN oauth_clients c ON c.id = g.client_id
            WHERE g.tenant_id = p_tenant AND g.revoked_at IS NULL
                AND ('ifttt' = ANY (g.scopes)
                    OR array_to_string(c.redirect_uris, ' ') LIKE '%://ifttt.com/%'))
        OR EXISTS (SELECT 1 FROM ifttt_trigger_identities WHERE tenant_id = p_tenant)
        AS yes) linked
$$;
REVOKE ALL ON FUNCTION sr_bump_links() FROM PUBLIC;

-- The path of every change and read, cheaper: plans kept for the session, and queueing in one
-- index step.
--
-- The functions a change or a read runs are PL/pgSQL.
--
-- A LANGUAGE sql function that cannot be inlined (these have scalar subqueries and a SET
-- clause) is parsed and planned again at every call: under concurrent writes that planning
-- was most of PostgreSQL's CPU per change. PL/pgSQL prepares each statement once per
-- connection and keeps its plan, so the same bodies cost only their execution. They also
-- take the generic plan at once: with a custom plan cheaper on paper (a parameter is known)
-- PostgreSQL would go on planning them afresh at each call, though they look rows up by the
-- household's keys either way. What they answer does not change; they still run as the
-- caller, under row-level security.

CREATE OR REPLACE FUNCTION sr_facts_version(p_tenant text) RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN (SELECT interest_version FROM tenants WHERE id = p_tenant)
        + coalesce((SELECT generation FROM ifttt_realtime WHERE id = 1), 0);
END
$$;

CREATE OR REPLACE FUNCTION sr_device_of(p_tenant text, p_device text) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN (
        SELECT jsonb_build_object(
            'seq', d.seq, 'id', d.id, 'tenant_id', d.tenant_id, 'type', d.type, 'name', d.name,
            'description', d.description, 'options', d.options, 'version', d.version,
            'created_at', d.created_at, 'updated_at', d.updated_at, 'room', d.room,
            'properties', coalesce((
                SELECT jsonb_object_agg(p.name, jsonb_build_array(p.value, p.changed_at))
                FROM device_properties p
                WHERE p.tenant_id = d.tenant_id AND p.device_id = d.id), '{}'))
        FROM devices d WHERE d.tenant_id = p_tenant AND d.id = p_device);
END
$$;

CREATE OR REPLACE FUNCTION sr_interest_facts_of(p_tenant text) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    linked boolean;
BEGIN
    linked := EXISTS (
            SELECT 1 FROM oauth_grants g JOIN oauth_clients c ON c.id = g.client_id
            WHERE g.tenant_id = p_tenant AND g.revoked_at IS NULL
                AND ('ifttt' = ANY (g.scopes)
                    OR array_to_string(c.redirect_uris, ' ') LIKE '%://ifttt.com/%'))
        OR EXISTS (SELECT 1 FROM ifttt_trigger_identities WHERE tenant_id = p_tenant);
    RETURN jsonb_build_object(
        'version', sr_facts_version(p_tenant),
        'alexa_grants', coalesce((
            SELECT jsonb_agg(id ORDER BY id) FROM alexa_grants
            WHERE tenant_id = p_tenant AND status = 'active'), '[]'),
        'webhooks', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                'id', id, 'event_types', to_jsonb(event_types), 'device_ids', to_jsonb(device_ids))
                ORDER BY seq)
            FROM webhooks WHERE tenant_id = p_tenant AND enabled), '[]'),
        'ifttt_linked', linked,
        'watches', CASE WHEN linked THEN coalesce((
            SELECT jsonb_agg(jsonb_build_array(
                user_id, identity, device_id, kind, direction, threshold) ORDER BY identity)
            FROM ifttt_trigger_identities
            WHERE tenant_id = p_tenant AND deleted_at IS NULL), '[]') ELSE '[]' END,
        'thresholds', CASE WHEN linked THEN coalesce((
            SELECT jsonb_agg(jsonb_build_array(device_id, direction, threshold)
                ORDER BY device_id, variant)
            FROM ifttt_thresholds WHERE tenant_id = p_tenant), '[]') ELSE '[]' END,
        'realtime', (SELECT jsonb_build_array(enabled, debounce_seconds)
            FROM ifttt_realtime WHERE id = 1),
        'links', coalesce((
            SELECT jsonb_agg(jsonb_build_array(integration, key) ORDER BY integration, key)
            FROM integration_records WHERE tenant_id = p_tenant AND kind = 'link'), '[]'));
END
$$;

-- Queueing behind a key's pending rows reads only the newest one. A key's pending rows are
-- due in the order of their ids (a retry moves the rows behind it too), so the newest is due
-- last; the maximum over all of them cost a step per row, and a webhook receiver that is down
-- piles up rows on its keys, so every change of its household grew slower while it was down.
CREATE OR REPLACE FUNCTION sr_queue_rows(p_tenant text, p_rows jsonb, p_now double precision)
RETURNS integer
LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
DECLARE
    r jsonb;
    m jsonb;
    k text;
    payload jsonb;
    found_id bigint;
    queued jsonb;
    fresh jsonb;
    added integer := 0;
BEGIN
    FOR r IN SELECT value FROM jsonb_array_elements(coalesce(p_rows, '[]')) LOOP
        k := r->>'ordering_key';
        payload := r->'payload';
        m := nullif(r->'merge', 'null');
        IF m IS NOT NULL AND m->>'kind' = 'tail' THEN
            -- The key's newest row, if a change may still join it; one being claimed right
            -- now is skipped, so nothing joins a row already on its way.
            SELECT o.id INTO found_id FROM outbox o
            WHERE o.id = (SELECT t.id FROM outbox t WHERE t.tenant_id = p_tenant
                    AND t.ordering_key = k AND t.status = 'pending' ORDER BY t.id DESC LIMIT 1)
                AND o.mergeable AND o.attempts = 0 AND o.lease_owner IS NULL
                AND o.status = 'pending'
            FOR UPDATE SKIP LOCKED;
            IF found_id IS NOT NULL THEN
                UPDATE outbox
                SET payload = outbox.payload || jsonb_build_object('device_version', m->'version')
                WHERE id = found_id;
                CONTINUE;
            END IF;
        ELSIF m IS NOT NULL AND m->>'kind' = 'waiting' THEN
            SELECT o.id, o.payload INTO found_id, queued FROM outbox o
            WHERE o.tenant_id = p_tenant AND o.ordering_key = k AND o.status = 'pending'
                AND o.device_id = r->>'device_id' AND o.next_attempt_at > p_now
                AND o.attempts = 0 AND o.lease_owner IS NULL
            ORDER BY o.id DESC LIMIT 1 FOR UPDATE;
            IF found_id IS NOT NULL THEN
                queued := coalesce(queued->'trigger_identities', '[]');
                SELECT coalesce(jsonb_agg(x.value ORDER BY x.n), '[]') INTO fresh
                FROM jsonb_array_elements(m->'identities') WITH ORDINALITY AS x (value, n)
                WHERE NOT queued @> jsonb_build_array(x.value);
                IF jsonb_array_length(fresh) = 0 THEN
                    CONTINUE;
                END IF;
                IF jsonb_array_length(queued) + jsonb_array_length(fresh)
                        <= (m->>'limit')::integer THEN
                    UPDATE outbox
                    SET payload = jsonb_set(outbox.payload, '{trigger_identities}', queued || fresh)
                    WHERE id = found_id;
                    CONTINUE;
                END IF;
                payload := jsonb_set(payload, '{trigger_identities}', fresh);
            END IF;
        END IF;
        INSERT INTO outbox (tenant_id, sink, destination, ordering_key, event_id, event_type,
            device_id, payload, mergeable, next_attempt_at, created_at)
        VALUES (p_tenant, r->>'sink', r->>'destination', k,
            'msg_' || replace(gen_random_uuid()::text, '-', ''), r->>'event_type',
            r->>'device_id', payload, (r->>'mergeable')::boolean,
            greatest(coalesce((r->>'due_at')::double precision, p_now), coalesce((
                SELECT h.next_attempt_at FROM outbox h
                WHERE h.ordering_key = k AND h.status = 'pending'
                ORDER BY h.id DESC LIMIT 1), 0)),
            p_now);
        added := added + 1;
    END LOOP;
    RETURN added;
END
$$;

-- Device reads that arrive together, in one call (store/postgres/batching.py): each read's
-- household is set before it is read, so row-level security applies to each as it does to
-- sr_get_device alone. Answers come in the order asked, NULL for a device not found.
CREATE FUNCTION sr_get_devices(p_tenants text[], p_devices text[]) RETURNS jsonb[]
LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
DECLARE
    answers jsonb[] := '{}';
BEGIN
    IF coalesce(array_length(p_tenants, 1), 0) <> coalesce(array_length(p_devices, 1), 0) THEN
        RAISE EXCEPTION 'sr_get_devices: % households for % devices',
            array_length(p_tenants, 1), array_length(p_devices, 1);
    END IF;
    FOR i IN 1 .. coalesce(array_length(p_tenants, 1), 0) LOOP
        PERFORM set_config('app.tenant_id', p_tenants[i], true);
        answers := answers || sr_device_of(p_tenants[i], p_devices[i]);
    END LOOP;
    RETURN answers;
END
$$;
REVOKE ALL ON FUNCTION sr_get_devices(text[], text[]) FROM PUBLIC;

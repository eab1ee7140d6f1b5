-- One round trip per change, per read and per delivery batch.
--
-- Core plans each change (who hears of it, what merges) from a household's interest facts;
-- the application keeps the facts, and the device, in memory and sends the whole change in
-- one call, sr_apply_change, which checks that neither went stale, writes the device, its
-- activity, its IFTTT timeline events and its outbox rows, and answers the current device
-- and facts when something moved meanwhile (the caller plans again). These functions run
-- as the caller (never SECURITY DEFINER): row-level security applies to everything they
-- touch, for the tenant they set first, for their own transaction only.
--
-- The dispatcher claims a batch and learns when the next row falls due in one call
-- (sr_claim_batch), and records a batch of results in one call (sr_record_deliveries).

-- Interest facts move whenever a row behind them changes -----------------------------------
-- A household's facts version is its own interest_version plus the instance's Realtime
-- generation (both only grow, so the sum moves whenever either does).
ALTER TABLE tenants ADD COLUMN interest_version bigint NOT NULL DEFAULT 0;
ALTER TABLE ifttt_realtime ADD COLUMN generation bigint NOT NULL DEFAULT 1;

CREATE FUNCTION sr_facts_version(p_tenant text) RETURNS bigint
LANGUAGE sql STABLE SET search_path = public, pg_temp
AS $$
    SELECT (SELECT interest_version FROM tenants WHERE id = p_tenant)
        + coalesce((SELECT generation FROM ifttt_realtime WHERE id = 1), 0)
$$;

CREATE FUNCTION sr_bump_interest() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE tenants SET interest_version = interest_version + 1 WHERE id = OLD.tenant_id;
        RETURN OLD;
    END IF;
    UPDATE tenants SET interest_version = interest_version + 1 WHERE id = NEW.tenant_id;
    RETURN NEW;
END
$$;

CREATE TRIGGER alexa_grants_interest AFTER INSERT OR DELETE OR UPDATE OF status
    ON alexa_grants FOR EACH ROW EXECUTE FUNCTION sr_bump_interest();
CREATE TRIGGER webhooks_interest AFTER INSERT OR DELETE
    OR UPDATE OF enabled, event_types, device_ids
    ON webhooks FOR EACH ROW EXECUTE FUNCTION sr_bump_interest();
CREATE TRIGGER ifttt_identities_interest AFTER INSERT OR DELETE
    OR UPDATE OF user_id, device_id, kind, direction, threshold, deleted_at
    ON ifttt_trigger_identities FOR EACH ROW EXECUTE FUNCTION sr_bump_interest();
CREATE TRIGGER ifttt_thresholds_interest AFTER INSERT OR DELETE
    ON ifttt_thresholds FOR EACH ROW EXECUTE FUNCTION sr_bump_interest();
CREATE TRIGGER oauth_grants_interest AFTER INSERT OR DELETE OR UPDATE OF revoked_at, scopes
    ON oauth_grants FOR EACH ROW EXECUTE FUNCTION sr_bump_interest();

-- Reads --------------------------------------------------------------------------------------

-- A household's interest facts as JSON (the tenant must be set).
CREATE FUNCTION sr_interest_facts_of(p_tenant text) RETURNS jsonb
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
            FROM ifttt_realtime WHERE id = 1))
    FROM (SELECT EXISTS (
            SELECT 1 FROM oauth_grants g JOIN oauth_clients c ON c.id = g.client_id
            WHERE g.tenant_id = p_tenant AND g.revoked_at IS NULL
                AND ('ifttt' = ANY (g.scopes)
                    OR array_to_string(c.redirect_uris, ' ') LIKE '%://ifttt.com/%'))
        OR EXISTS (SELECT 1 FROM ifttt_trigger_identities WHERE tenant_id = p_tenant)
        AS yes) linked
$$;

-- One device with its properties as JSON, or NULL (the tenant must be set).
CREATE FUNCTION sr_device_of(p_tenant text, p_device text) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = public, pg_temp
AS $$
    SELECT jsonb_build_object(
        'seq', d.seq, 'id', d.id, 'tenant_id', d.tenant_id, 'type', d.type, 'name', d.name,
        'description', d.description, 'options', d.options, 'version', d.version,
        'created_at', d.created_at, 'updated_at', d.updated_at, 'room', d.room,
        'properties', coalesce((
            SELECT jsonb_object_agg(p.name, jsonb_build_array(p.value, p.changed_at))
            FROM device_properties p WHERE p.tenant_id = d.tenant_id AND p.device_id = d.id),
            '{}'))
    FROM devices d WHERE d.tenant_id = p_tenant AND d.id = p_device
$$;

-- A GET in one round trip: the tenant is set for this statement's transaction only.
CREATE FUNCTION sr_get_device(p_tenant text, p_device text) RETURNS jsonb
LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
BEGIN
    PERFORM set_config('app.tenant_id', p_tenant, true);
    RETURN sr_device_of(p_tenant, p_device);
END
$$;

-- A webhook in one round trip (the deliverer reads it for every delivery).
CREATE FUNCTION sr_get_webhook(p_tenant text, p_webhook text) RETURNS SETOF webhooks
LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
BEGIN
    PERFORM set_config('app.tenant_id', p_tenant, true);
    RETURN QUERY SELECT * FROM webhooks WHERE tenant_id = p_tenant AND id = p_webhook;
END
$$;

-- A device and its household's facts, for a change whose caller remembers neither.
CREATE FUNCTION sr_change_context(p_tenant text, p_device text) RETURNS jsonb
LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
BEGIN
    PERFORM set_config('app.tenant_id', p_tenant, true);
    RETURN jsonb_build_object(
        'device', sr_device_of(p_tenant, p_device), 'facts', sr_interest_facts_of(p_tenant));
END
$$;

CREATE FUNCTION sr_interest_facts(p_tenant text) RETURNS jsonb
LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
BEGIN
    PERFORM set_config('app.tenant_id', p_tenant, true);
    RETURN sr_interest_facts_of(p_tenant);
END
$$;

-- Writes -------------------------------------------------------------------------------------

-- Append IFTTT timeline events (each with the threshold crossings it makes).
CREATE FUNCTION sr_append_timeline(p_tenant text, p_events jsonb, p_now double precision)
RETURNS void
LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
DECLARE
    e jsonb;
    v_variant text;
    v_uid text;
    v_source bigint;
BEGIN
    FOR e IN SELECT value FROM jsonb_array_elements(coalesce(p_events, '[]')) LOOP
        v_uid := replace(gen_random_uuid()::text, '-', '');
        INSERT INTO ifttt_events (uid, variant, source_id, tenant_id, device_id, device_name,
            kind, property, old_value, new_value, old_number, new_number, cause, source,
            occurred_at)
        VALUES (v_uid, '', NULL, p_tenant, e->>'device_id', e->>'device_name', e->>'kind',
            e->>'property', nullif(e->'old', 'null'), nullif(e->'new', 'null'),
            (e->>'old_number')::double precision, (e->>'new_number')::double precision,
            e->>'cause', e->>'source', p_now)
        RETURNING id INTO v_source;
        FOR v_variant IN
            SELECT value FROM jsonb_array_elements_text(coalesce(e->'crossed', '[]'))
        LOOP
            INSERT INTO ifttt_events (uid, variant, source_id, tenant_id, device_id,
                device_name, kind, property, old_value, new_value, old_number, new_number,
                cause, source, occurred_at)
            SELECT v_uid || '-' || v_variant, v_variant, v_source, ev.tenant_id, ev.device_id,
                ev.device_name, ev.kind, ev.property, ev.old_value, ev.new_value,
                ev.old_number, ev.new_number, ev.cause, ev.source, ev.occurred_at
            FROM ifttt_events ev WHERE ev.id = v_source;
        END LOOP;
    END LOOP;
END
$$;

-- Queue planned outbox rows: each merges into a queued row as its plan allows, or is added
-- behind the rows of its key (never due before them). Returns the rows added.
CREATE FUNCTION sr_queue_rows(p_tenant text, p_rows jsonb, p_now double precision)
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
                SELECT max(h.next_attempt_at) FROM outbox h
                WHERE h.ordering_key = k AND h.status = 'pending'), 0)),
            p_now);
        added := added + 1;
    END LOOP;
    RETURN added;
END
$$;

-- A whole device change in one call. p: tenant, device, expected_version, version,
-- facts_version, now, properties {name: value}, name, name_key, description, options,
-- room, activity [...], timeline [...], rows [...]. Answers {"status": "ok",
-- "activity_ids", "rows"}, or {"status": "stale" | "missing", "device", "facts"} when the
-- device or the facts the plan was made from are not the current ones (nothing written).
CREATE FUNCTION sr_apply_change(p jsonb) RETURNS jsonb
LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
DECLARE
    t text := p->>'tenant';
    d text := p->>'device';
    now_ double precision := (p->>'now')::double precision;
    ids bigint[];
    added integer;
    current jsonb;
BEGIN
    PERFORM set_config('app.tenant_id', t, true);
    IF sr_facts_version(t) IS DISTINCT FROM (p->>'facts_version')::bigint THEN
        RETURN jsonb_build_object('status', 'stale', 'device', sr_device_of(t, d),
            'facts', sr_interest_facts_of(t));
    END IF;
    UPDATE devices SET version = (p->>'version')::integer, updated_at = now_,
        name = coalesce(p->>'name', name), name_key = coalesce(p->>'name_key', name_key),
        description = coalesce(p->>'description', description),
        options = coalesce(nullif(p->'options', 'null'), options),
        room = coalesce(p->>'room', room)
    WHERE tenant_id = t AND id = d AND version = (p->>'expected_version')::integer;
    IF NOT FOUND THEN
        current := sr_device_of(t, d);
        RETURN jsonb_build_object(
            'status', CASE WHEN current IS NULL THEN 'missing' ELSE 'stale' END,
            'device', current, 'facts', sr_interest_facts_of(t));
    END IF;
    INSERT INTO device_properties (tenant_id, device_id, name, value, changed_at)
    SELECT t, d, key, value, now_ FROM jsonb_each(coalesce(p->'properties', '{}'))
    ON CONFLICT (tenant_id, device_id, name)
    DO UPDATE SET value = excluded.value, changed_at = excluded.changed_at;
    WITH written AS (
        INSERT INTO activity_log (tenant_id, device_id, device_name, kind, source, actor, cause,
            property, old_value, new_value, detail, created_at)
        SELECT t, a.e->>'device_id', a.e->>'device_name', a.e->>'kind', a.e->>'source',
            a.e->>'actor', a.e->>'cause', a.e->>'property', a.e->'old_value', a.e->'new_value',
            coalesce(nullif(a.e->'detail', 'null'), '{}'), now_
        FROM jsonb_array_elements(coalesce(p->'activity', '[]')) WITH ORDINALITY AS a (e, n)
        ORDER BY a.n
        RETURNING id
    )
    SELECT array_agg(id ORDER BY id) INTO ids FROM written;
    PERFORM sr_append_timeline(t, p->'timeline', now_);
    added := sr_queue_rows(t, p->'rows', now_);
    RETURN jsonb_build_object('status', 'ok', 'activity_ids', to_jsonb(coalesce(ids, '{}')),
        'rows', added);
END
$$;

-- Delivery ----------------------------------------------------------------------------------

-- Claim a batch and say when the next row falls due, in one call.
CREATE FUNCTION sr_claim_batch(
    p_owner text,
    p_now double precision,
    p_lease_until double precision,
    p_per_destination integer,
    p_limit integer
) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    claimed jsonb;
BEGIN
    SELECT coalesce(jsonb_agg(to_jsonb(c) ORDER BY c.id), '[]') INTO claimed
    FROM sr_claim_outbox(p_owner, p_now, p_lease_until, p_per_destination, p_limit) c;
    RETURN jsonb_build_object('rows', claimed, 'next_due', sr_outbox_next_due());
END
$$;

-- Record a batch of delivery results, each under its row's tenant and only while p_owner
-- still holds the row's lease; returns the ids recorded. A row deleted meanwhile (its
-- webhook was removed) still gets its history and activity.
CREATE FUNCTION sr_record_deliveries(
    p_owner text, p_now double precision, p_outcomes jsonb
) RETURNS bigint[]
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    o jsonb;
    a jsonb;
    row_id bigint;
    recorded bigint[] := '{}';
BEGIN
    FOR o IN SELECT value FROM jsonb_array_elements(p_outcomes) LOOP
        row_id := (o->>'id')::bigint;
        UPDATE outbox SET status = o->>'status',
            attempts = attempts + (o->>'attempted')::integer,
            next_attempt_at = coalesce((o->>'next_attempt_at')::double precision,
                next_attempt_at),
            lease_owner = NULL, lease_until = NULL, last_error = o->>'error',
            merged_into = o->>'merged_into',
            finished_at = CASE WHEN o->>'status' = 'pending' THEN NULL ELSE p_now END
        WHERE id = row_id AND lease_owner = p_owner;
        IF NOT FOUND AND EXISTS (SELECT 1 FROM outbox WHERE id = row_id) THEN
            CONTINUE;  -- the lease was lost: the row's new owner records it
        END IF;
        recorded := recorded || row_id;
        IF o->>'next_attempt_at' IS NOT NULL THEN
            -- The rows behind it wait for its retry (never due before it).
            UPDATE outbox SET next_attempt_at = (o->>'next_attempt_at')::double precision
            WHERE tenant_id = o->>'tenant_id' AND ordering_key = o->>'ordering_key'
                AND status = 'pending' AND id > row_id
                AND next_attempt_at < (o->>'next_attempt_at')::double precision;
        END IF;
        IF o->>'sink' = 'webhook' AND o->>'merged_into' IS NULL THEN
            INSERT INTO webhook_deliveries (tenant_id, webhook_id, event_id, event_type,
                attempt, status_code, error, duration_ms, created_at)
            SELECT o->>'tenant_id', o->>'destination', o->>'event_id', o->>'event_type',
                (o->>'attempt')::integer, (o->>'status_code')::integer, o->>'error',
                (o->>'duration_ms')::double precision, p_now
            WHERE EXISTS (SELECT 1 FROM webhooks
                WHERE tenant_id = o->>'tenant_id' AND id = o->>'destination');
        END IF;
        a := nullif(o->'activity', 'null');
        IF a IS NOT NULL THEN
            INSERT INTO activity_log (tenant_id, device_id, device_name, kind, source, actor,
                cause, property, old_value, new_value, detail, created_at)
            VALUES (o->>'tenant_id', a->>'device_id', a->>'device_name', a->>'kind',
                a->>'source', a->>'actor', a->>'cause', a->>'property', a->'old_value',
                a->'new_value', coalesce(nullif(a->'detail', 'null'), '{}'), p_now);
        END IF;
    END LOOP;
    RETURN recorded;
END
$$;

REVOKE ALL ON FUNCTION sr_claim_batch(text, double precision, double precision, integer,
    integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION sr_record_deliveries(text, double precision, jsonb) FROM PUBLIC;
-- The caller's functions are for the app role too (grant_app_role), never for PUBLIC.
REVOKE ALL ON FUNCTION sr_bump_interest() FROM PUBLIC;
REVOKE ALL ON FUNCTION sr_facts_version(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION sr_interest_facts_of(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION sr_device_of(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION sr_get_device(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION sr_get_webhook(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION sr_change_context(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION sr_interest_facts(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION sr_append_timeline(text, jsonb, double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION sr_queue_rows(text, jsonb, double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION sr_apply_change(jsonb) FROM PUBLIC;

-- Ordered delivery. Every outbox row belongs to an ordering key (Alexa: grant + endpoint;
-- IFTTT Realtime: the user; webhooks: webhook + device). A row is claimed only when no older
-- pending row of its key holds it back, so rows of one key reach their destination in commit
-- order, a row waiting for its retry (or being sent) holds back the rows behind it, and no
-- two replicas ever deliver rows of one key at once. 'mergeable' rows (coalescable state
-- changes, IFTTT Realtime nudges) that are due together are claimed together (one request
-- may carry them); see staterelay/core/delivery/keys.py.
--
-- A row now ends as 'delivered', 'merged' (a report sent for another row of its key carried
-- its change: merged_into names that row's event id) or 'dead'.
ALTER TABLE outbox ADD COLUMN ordering_key text;
UPDATE outbox SET ordering_key = CASE sink
    WHEN 'ifttt' THEN sink || ':' || destination
    ELSE sink || ':' || destination || ':' || coalesce(device_id, '')
END;
ALTER TABLE outbox ALTER COLUMN ordering_key SET NOT NULL;
ALTER TABLE outbox ADD COLUMN mergeable boolean NOT NULL DEFAULT false;
ALTER TABLE outbox ADD COLUMN merged_into text;
ALTER TABLE outbox DROP CONSTRAINT outbox_status_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_status_check
    CHECK (status IN ('pending', 'delivered', 'merged', 'dead'));
CREATE INDEX outbox_key ON outbox (ordering_key, id) WHERE status = 'pending';

-- Lease up to p_limit due rows to p_owner, in id order: only rows whose older pending rows
-- of their key are all mergeable with them and claimable now (then they go together), at
-- most p_per_destination of one destination (so one backlog cannot fill the batch).
-- SKIP LOCKED passes over rows another replica is claiming (or a change is merging into)
-- right now; the lease conditions are repeated on the locked rows because a row leased and
-- committed by another replica meanwhile is re-checked there, not in `free`.
CREATE OR REPLACE FUNCTION sr_claim_outbox(
    p_owner text,
    p_now double precision,
    p_lease_until double precision,
    p_per_destination integer,
    p_limit integer
) RETURNS SETOF outbox
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    WITH free AS (
        SELECT o.id, row_number() OVER (PARTITION BY o.sink, o.destination ORDER BY o.id) AS place
        FROM outbox o
        WHERE o.status = 'pending' AND o.next_attempt_at <= p_now
            AND (o.lease_until IS NULL OR o.lease_until < p_now)
            AND NOT EXISTS (
                SELECT 1 FROM outbox e
                WHERE e.ordering_key = o.ordering_key AND e.status = 'pending' AND e.id < o.id
                    AND NOT (e.mergeable AND o.mergeable AND e.next_attempt_at <= p_now
                        AND (e.lease_until IS NULL OR e.lease_until < p_now)))
    ), picked AS (
        SELECT o.id FROM outbox o
        WHERE o.id IN (SELECT id FROM free WHERE place <= p_per_destination)
            AND o.status = 'pending' AND o.next_attempt_at <= p_now
            AND (o.lease_until IS NULL OR o.lease_until < p_now)
        ORDER BY o.id
        LIMIT p_limit
        FOR UPDATE OF o SKIP LOCKED
    )
    UPDATE outbox SET lease_owner = p_owner, lease_until = p_lease_until
    FROM picked WHERE outbox.id = picked.id
    RETURNING outbox.*
$$;

-- When the next row may be claimed (falls due, or its lease runs out); a row waiting on an
-- older one (not mergeable with it, or being sent) does not count: the older one's time does.
CREATE OR REPLACE FUNCTION sr_outbox_next_due() RETURNS double precision
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT min(greatest(o.next_attempt_at, coalesce(o.lease_until, 0)))
    FROM outbox o
    WHERE o.status = 'pending' AND NOT EXISTS (
        SELECT 1 FROM outbox e
        WHERE e.ordering_key = o.ordering_key AND e.status = 'pending' AND e.id < o.id
            AND NOT (e.mergeable AND o.mergeable AND e.lease_owner IS NULL))
$$;

-- Retention: IFTTT expects a trigger's timeline to stay; the newest p_keep events of every
-- timeline are kept whatever their age.
DROP FUNCTION sr_prune_ifttt(double precision, double precision, double precision);
CREATE FUNCTION sr_prune_ifttt(
    p_events_before double precision,
    p_keep integer,
    p_identities_before double precision,
    p_requests_before double precision,
    OUT events bigint, OUT identities bigint, OUT thresholds bigint, OUT requests bigint
)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
    DELETE FROM ifttt_events e USING (
        SELECT id FROM (
            SELECT id, occurred_at, row_number() OVER (
                PARTITION BY tenant_id, device_id, kind, variant ORDER BY id DESC) AS place
            FROM ifttt_events
        ) ranked WHERE ranked.place > p_keep AND ranked.occurred_at < p_events_before
    ) old WHERE e.id = old.id;
    GET DIAGNOSTICS events = ROW_COUNT;
    DELETE FROM ifttt_trigger_identities
    WHERE last_polled_at < p_identities_before OR deleted_at < p_identities_before;
    GET DIAGNOSTICS identities = ROW_COUNT;
    DELETE FROM ifttt_thresholds WHERE last_polled_at < p_identities_before;
    GET DIAGNOSTICS thresholds = ROW_COUNT;
    DELETE FROM ifttt_action_requests WHERE created_at < p_requests_before;
    GET DIAGNOSTICS requests = ROW_COUNT;
END
$$;

REVOKE ALL ON FUNCTION sr_prune_ifttt(double precision, integer, double precision,
    double precision) FROM PUBLIC;

-- The OAuth grant (linked app) whose token accepted the Alexa grant: revoking that linked
-- app ends the Alexa link too.
ALTER TABLE alexa_grants ADD COLUMN oauth_grant_id text;

-- Facts the instance keeps about itself, such as which household it made for IFTTT's
-- endpoint tests (recognized by this marker, never by an e-mail address). Instance-wide,
-- like ifttt_realtime: it holds no tenant's data.
CREATE TABLE instance_markers (
    name text PRIMARY KEY,
    value text NOT NULL,
    created_at double precision NOT NULL
);

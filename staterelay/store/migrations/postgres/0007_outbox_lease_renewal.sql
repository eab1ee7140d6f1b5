-- Lease renewal: a replica extends the leases of the rows it still holds (claimed, not yet
-- recorded) while they wait behind a slow destination, so they are not claimed again by
-- another replica and sent twice. Only rows still pending and leased to p_owner are renewed;
-- the ids returned are the rows p_owner still holds (a row missing was taken by another
-- replica after its lease ran out, or was recorded meanwhile).
CREATE FUNCTION sr_renew_outbox_leases(
    p_owner text,
    p_ids bigint[],
    p_lease_until double precision
) RETURNS SETOF bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    UPDATE outbox SET lease_until = p_lease_until
    WHERE id = ANY (p_ids) AND status = 'pending' AND lease_owner = p_owner
    RETURNING id
$$;

REVOKE ALL ON FUNCTION sr_renew_outbox_leases(text, bigint[], double precision) FROM PUBLIC;

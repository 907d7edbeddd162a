-- eventstream_append writes one group-commit transaction's appends in a
-- single call, so the client needs one round trip per group and the append
-- lock is held only while the server works: take the lock, read the head,
-- check each append's expected version against its stream (in queue order,
-- so two appends to one stream in a group see each other), and insert every
-- accepted event with its position and version. It returns one row per
-- append: accepted (first version and position) or not (the actual
-- version). An event id that is already stored makes the INSERT fail on
-- events_id_key; the client then reruns the group with the id check.
--
-- expected: -1 any, -2 no stream, -3 stream exists, >= 0 exact version.
CREATE FUNCTION eventstream_append(
    lock_key    bigint,
    ts          timestamptz,
    req_stream  text[],
    req_expect  bigint[],
    req_count   integer[],
    ev_id       uuid[],
    ev_type     text[],
    ev_source   text[],
    ev_target   text[],
    ev_tenant   text[],
    ev_corr     text[],
    ev_caus     text[],
    ev_prod     text[],
    ev_sv       integer[],
    ev_payload  jsonb[],
    ev_meta     jsonb[]
) RETURNS TABLE (accepted boolean, actual bigint, first_version bigint, first_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
    head     bigint;
    cur      bigint;
    e        bigint;
    off      integer := 0;
    seen     jsonb := '{}';
    acc_req  integer[] := '{}';
    acc_off  integer[] := '{}';
    acc_ver  bigint[] := '{}';
    acc_pos  bigint[] := '{}';
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT coalesce(max(position), 0) INTO head FROM events;
    -- Every stream's current version in one statement.
    SELECT coalesce(jsonb_object_agg(d.s, (SELECT coalesce(max(version), 0) FROM events WHERE stream = d.s)), '{}')
    INTO seen
    FROM (SELECT DISTINCT unnest(req_stream) AS s) AS d;
    FOR r IN 1 .. coalesce(array_length(req_stream, 1), 0) LOOP
        cur := (seen ->> req_stream[r])::bigint;
        e := req_expect[r];
        IF e = -1 OR (e = -2 AND cur = 0) OR (e = -3 AND cur > 0) OR (e >= 0 AND cur = e) THEN
            accepted := true; actual := cur; first_version := cur + 1; first_position := head + 1;
            acc_req := acc_req || r; acc_off := acc_off || off;
            acc_ver := acc_ver || (cur + 1); acc_pos := acc_pos || (head + 1);
            head := head + req_count[r];
            seen := seen || jsonb_build_object(req_stream[r], cur + req_count[r]);
        ELSE
            accepted := false; actual := cur; first_version := NULL; first_position := NULL;
        END IF;
        off := off + req_count[r];
        RETURN NEXT;
    END LOOP;
    IF array_length(acc_req, 1) > 0 THEN
        INSERT INTO events (position, id, stream, version, type, source, target, tenant_id,
                            correlation_id, causation_id, producer, schema_version, "timestamp", payload, meta)
        SELECT a.pos0 + g.j, ev_id[i], req_stream[a.r], a.ver0 + g.j, ev_type[i], ev_source[i],
               nullif(ev_target[i], ''), ev_tenant[i], nullif(ev_corr[i], ''), nullif(ev_caus[i], ''),
               nullif(ev_prod[i], ''), ev_sv[i], ts, ev_payload[i], ev_meta[i]
        FROM unnest(acc_req, acc_off, acc_ver, acc_pos) AS a(r, off0, ver0, pos0)
        CROSS JOIN LATERAL generate_series(0, req_count[a.r] - 1) AS g(j)
        CROSS JOIN LATERAL (SELECT a.off0 + g.j + 1 AS i) AS x
        ORDER BY a.pos0 + g.j;
    END IF;
END
$$;

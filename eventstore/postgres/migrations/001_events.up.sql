-- The log. position is a gapless counter assigned under a transaction-scoped
-- advisory lock (see docs/architecture.md, "Ordering"), so it doubles as
-- the commit order: no reader that reads by position can skip an event.
CREATE TABLE events (
    position       bigint      NOT NULL,
    id             uuid        NOT NULL,
    stream         text        NOT NULL,
    version        bigint      NOT NULL,
    type           text        NOT NULL,
    source         text        NOT NULL,
    target         text,
    tenant_id      text        NOT NULL,
    correlation_id text,
    causation_id   text,
    producer       text,
    schema_version integer     NOT NULL,
    "timestamp"    timestamptz NOT NULL,
    payload        jsonb       NOT NULL,
    meta           jsonb       NOT NULL,
    CONSTRAINT events_pkey PRIMARY KEY (position),
    CONSTRAINT events_id_key UNIQUE (id),
    CONSTRAINT events_stream_version_key UNIQUE (stream, version),
    CONSTRAINT events_version_check CHECK (version >= 1),
    CONSTRAINT events_position_check CHECK (position >= 1)
);

COMMENT ON TABLE events IS 'eventstream: the append-only event log (Charter v1.0 envelopes). Write through the eventstream API only: it validates every envelope.';

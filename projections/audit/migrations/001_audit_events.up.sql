-- The audit log: every event of every type, as stored, one row each.
CREATE TABLE audit_events (
    position         bigint      NOT NULL,
    prepare_position bigint      NOT NULL,
    event_id         uuid        NOT NULL,
    type             text        NOT NULL,
    stream           text        NOT NULL,
    version          bigint      NOT NULL,
    source           text        NOT NULL,
    target           text,
    tenant_id        text        NOT NULL,
    correlation_id   text,
    causation_id     text,
    producer         text,
    schema_version   integer     NOT NULL,
    occurred_at      timestamptz NOT NULL,
    payload          jsonb       NOT NULL,
    meta             jsonb       NOT NULL,
    PRIMARY KEY (position, prepare_position)
);

CREATE UNIQUE INDEX audit_events_event_id_idx ON audit_events (event_id);
CREATE INDEX audit_events_type_time_idx ON audit_events (type, occurred_at);
CREATE INDEX audit_events_stream_idx ON audit_events (stream, version);
CREATE INDEX audit_events_tenant_time_idx ON audit_events (tenant_id, occurred_at);
CREATE INDEX audit_events_correlation_idx ON audit_events (correlation_id) WHERE correlation_id IS NOT NULL;
-- Rows arrive in time order, so a BRIN index serves time ranges at a
-- fraction of a B-tree's write cost.
CREATE INDEX audit_events_time_idx ON audit_events USING brin (occurred_at);

COMMENT ON TABLE audit_events IS 'eventstream read model (projection "audit"): every event of the log, payload as jsonb.';

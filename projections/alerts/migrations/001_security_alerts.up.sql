-- Security alerts: one row per tenant, alert type, repeating source and
-- reason, with its severity, when it was first and last seen and how
-- often. Positions order the occurrences, so the row is the same whatever
-- order the occurrences were applied in (a retried parked event).
CREATE TABLE security_alerts (
    tenant_id              text        NOT NULL,
    alert_type             text        NOT NULL CHECK (alert_type IN ('approval_invalid', 'dag_tampering')),
    source                 text        NOT NULL,
    reason                 text        NOT NULL,
    severity               text        NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    event_type             text        NOT NULL,
    ir_id                  text,
    occurrences            bigint      NOT NULL,
    first_seen             timestamptz NOT NULL,
    first_event_id         uuid        NOT NULL,
    first_position         bigint      NOT NULL,
    first_prepare_position bigint      NOT NULL,
    last_seen              timestamptz NOT NULL,
    last_event_id          uuid        NOT NULL,
    last_position          bigint      NOT NULL,
    last_prepare_position  bigint      NOT NULL,
    last_stream            text        NOT NULL,
    last_correlation_id    text,
    details                jsonb       NOT NULL,
    PRIMARY KEY (tenant_id, alert_type, source, reason)
);
CREATE INDEX security_alerts_severity_idx ON security_alerts (severity, last_seen);
CREATE INDEX security_alerts_tenant_idx ON security_alerts (tenant_id, last_seen);

COMMENT ON TABLE security_alerts IS 'eventstream read model (projection "alerts"): refused approvals and DAG tampering, one row per repeating source.';

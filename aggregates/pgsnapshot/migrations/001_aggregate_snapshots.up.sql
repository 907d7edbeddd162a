-- The newest snapshot of each aggregate stream per snapshot schema version.
-- Several schema versions may coexist during a deployment; readers use only
-- their own.
CREATE TABLE aggregate_snapshots (
    stream         text        NOT NULL,
    schema_version integer     NOT NULL CHECK (schema_version >= 1),
    aggregate      text        NOT NULL,
    version        bigint      NOT NULL CHECK (version >= 1),
    state          jsonb       NOT NULL,
    taken_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, schema_version)
);

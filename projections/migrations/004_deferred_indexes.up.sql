-- Indexes a rebuild of a projection with DeferIndexes dropped from the
-- generation it builds, to be made again, each in one CREATE INDEX over
-- the loaded rows, once the generation has caught up and before it is
-- swapped in. Kept here, not in memory, so that a rebuild interrupted
-- (a crash, a cancel) and resumed, or a Migrate meanwhile, still makes
-- them. definition is pg_get_indexdef's, written with every name
-- qualified (it was read with search_path pg_catalog).
CREATE TABLE IF NOT EXISTS projection_deferred_indexes (
    projection text    NOT NULL,
    generation integer NOT NULL,
    index_name text    NOT NULL,
    table_name text    NOT NULL,
    definition text    NOT NULL,
    comment    text,
    deferred_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, generation, index_name)
);

-- attempt holds a schema integer, which the catalog decodes as an int64
-- (projections.Integer): an integer column refused an attempt above
-- 2147483647, and the event that named it was parked. Rows written
-- before this migration keep their attempt.
ALTER TABLE course_catalog ALTER COLUMN attempt TYPE bigint;

-- Analyst roles and the one tenant each may read (eventstream tenants
-- grant-analyst). Every read-model table with a tenant_id column carries a
-- row-level security policy that lets a role see the rows of the tenant
-- it is mapped to here, and no other.
CREATE TABLE eventstream_analysts (
    role_name  text        NOT NULL PRIMARY KEY,
    tenant_id  text        NOT NULL CHECK (tenant_id <> '' AND tenant_id <> '*'),
    granted_at timestamptz NOT NULL DEFAULT now()
);

-- An analyst reads its own mapping (the policies look it up as the
-- analyst), never another analyst's. A login role that is a member of an
-- analyst (group) role reads as that role.
ALTER TABLE eventstream_analysts ENABLE ROW LEVEL SECURITY;
CREATE POLICY eventstream_analysts_self ON eventstream_analysts
    FOR SELECT USING (EXISTS (SELECT 1 FROM pg_roles r
        WHERE r.rolname = eventstream_analysts.role_name AND pg_has_role(current_user, r.oid, 'USAGE')));

COMMENT ON TABLE eventstream_analysts IS 'eventstream: analyst roles and the tenant each may read in the read models (row-level security). Change with eventstream tenants grant-analyst / revoke-analyst.';

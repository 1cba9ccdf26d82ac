-- Targets belong to an upstream: deleting the upstream deletes its targets.
ALTER TABLE entities ADD COLUMN upstream_id TEXT;
CREATE INDEX entities_upstream ON entities (upstream_id);

-- Consumer groups: memberships and group-scoped plugins belong to their group; deleting the
-- group deletes them.
ALTER TABLE entities ADD COLUMN consumer_group_id TEXT;
CREATE INDEX entities_consumer_group ON entities (consumer_group_id);

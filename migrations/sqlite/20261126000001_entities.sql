-- Every entity is a JSON body validated by the gateway; the columns beside it are what the
-- store must index: unique keys, references to parents, tags.
CREATE TABLE entities (
    kind        TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    name_key    TEXT,
    alt_key     TEXT,
    service_id  TEXT,
    route_id    TEXT,
    consumer_id TEXT,
    tags        TEXT    NOT NULL DEFAULT ',',
    body        TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE UNIQUE INDEX entities_name_key ON entities (kind, name_key);
CREATE UNIQUE INDEX entities_alt_key ON entities (kind, alt_key);
CREATE INDEX entities_service ON entities (service_id);
CREATE INDEX entities_route ON entities (route_id);
CREATE INDEX entities_consumer ON entities (consumer_id);

-- Bumped by every write; nodes poll it to know when to rebuild their snapshot.
CREATE TABLE config_version (
    id      INTEGER PRIMARY KEY,
    version BIGINT  NOT NULL
);
INSERT INTO config_version (id, version) VALUES (1, 1);

-- The embedded analytics store: the latest raw requests, and the batches already stored.
CREATE TABLE IF NOT EXISTS recent (
    timestamp_us INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    service TEXT NOT NULL,
    route TEXT NOT NULL,
    consumer TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER NOT NULL,
    latency_us INTEGER NOT NULL,
    client_ip TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS recent_by_time ON recent (timestamp_us);

-- Batches already stored, so a retried batch is not counted twice.
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    stored_at INTEGER NOT NULL
);

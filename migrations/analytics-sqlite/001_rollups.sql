-- The embedded analytics store (data/analytics.db): per-minute rollups and the latest raw events.
CREATE TABLE IF NOT EXISTS rollup (
    minute INTEGER NOT NULL,
    service TEXT NOT NULL,
    route TEXT NOT NULL,
    consumer TEXT NOT NULL,
    status INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    rate_limited INTEGER NOT NULL,
    auth_failed INTEGER NOT NULL,
    bytes_in INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL,
    latency BLOB NOT NULL,
    PRIMARY KEY (minute, service, route, consumer, status)
) WITHOUT ROWID;

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

-- The embedded analytics store (data/analytics.db): rollups per minute and per hour.
-- A rollup table, made once per period ({rollup} is rollup_minute, rollup_hour): `start`
-- is the period's first second; `upstream` the target address that served the requests.
CREATE TABLE IF NOT EXISTS {rollup} (
    start INTEGER NOT NULL,
    service TEXT NOT NULL,
    route TEXT NOT NULL,
    consumer TEXT NOT NULL,
    upstream TEXT NOT NULL DEFAULT '',
    status INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    rate_limited INTEGER NOT NULL,
    auth_failed INTEGER NOT NULL,
    bytes_in INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL,
    latency BLOB NOT NULL,
    -- Requests answered from proxy-cache's store.
    cache_hits INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (start, service, route, consumer, upstream, status)
) WITHOUT ROWID;

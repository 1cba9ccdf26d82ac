-- Request events and their per-minute rollups. Written in the SQL both ClickHouse 18.16 (the
-- Debian server) and current releases accept: DateTime plus a microseconds column instead of
-- DateTime64, partitions by day instead of TTL, no CODEC, no Map.
-- `{database}` is replaced by TOLLGATE_CLICKHOUSE_DATABASE; statements end with `;`.

CREATE TABLE IF NOT EXISTS {database}.events (
    date Date,
    timestamp DateTime,
    timestamp_us UInt32,
    request_id String,
    service String,
    route String,
    consumer_id String,
    consumer String,
    credential_id String,
    method String,
    host String,
    path String,
    route_path String,
    status UInt16,
    latency_us UInt32,
    upstream_latency_us UInt32,
    gateway_latency_us UInt32,
    bytes_in UInt64,
    bytes_out UInt64,
    client_ip String,
    user_agent String,
    rate_limited UInt8,
    auth_failed UInt8,
    upstream_failed UInt8,
    upstream_addr String,
    grpc_status Int32,
    ws_close_code Int32,
    cache_hit UInt8,
    node String,
    -- The pipeline's batch: a retried insert first checks whether it already landed.
    batch_id String
) ENGINE = MergeTree
PARTITION BY date
ORDER BY (timestamp, service, route);

CREATE TABLE IF NOT EXISTS {database}.events_minute (
    date Date,
    minute DateTime,
    service String,
    route String,
    consumer String,
    status UInt16,
    requests AggregateFunction(count),
    rate_limited AggregateFunction(sum, UInt8),
    auth_failed AggregateFunction(sum, UInt8),
    bytes_in AggregateFunction(sum, UInt64),
    bytes_out AggregateFunction(sum, UInt64),
    latency AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Float64)
) ENGINE = AggregatingMergeTree
PARTITION BY date
ORDER BY (minute, service, route, consumer, status);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.events_minute_mv TO {database}.events_minute AS
SELECT
    date,
    toStartOfMinute(timestamp) AS minute,
    service,
    route,
    consumer,
    status,
    countState() AS requests,
    sumState(rate_limited) AS rate_limited,
    sumState(auth_failed) AS auth_failed,
    sumState(bytes_in) AS bytes_in,
    sumState(bytes_out) AS bytes_out,
    quantilesTDigestState(0.5, 0.95, 0.99)(toFloat64(latency_us)) AS latency
FROM {database}.events
GROUP BY date, minute, service, route, consumer, status;

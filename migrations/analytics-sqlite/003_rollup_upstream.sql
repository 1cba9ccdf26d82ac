-- A rollup table made before rollups kept the upstream target ({rollup}_old, renamed from
-- {rollup} just before): its rows move to the new table with no target.
INSERT INTO {rollup} (start, service, route, consumer, upstream, status, requests, rate_limited,
    auth_failed, bytes_in, bytes_out, latency)
SELECT start, service, route, consumer, '', status, requests, rate_limited, auth_failed,
    bytes_in, bytes_out, latency FROM {rollup}_old;
DROP TABLE {rollup}_old;

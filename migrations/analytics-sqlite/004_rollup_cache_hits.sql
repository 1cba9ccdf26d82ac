-- A rollup table made before rollups counted cache hits: the column, zero for its rows.
ALTER TABLE {rollup} ADD COLUMN cache_hits INTEGER NOT NULL DEFAULT 0;

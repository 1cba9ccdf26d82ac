-- Columns added to the events table after its first release; 001 declares them for new
-- databases. ClickHouse 18.16 has no `ADD COLUMN IF NOT EXISTS`: each statement here adds one
-- column and runs only when `system.columns` lacks it (ClickHouse::prepare).

ALTER TABLE {database}.events ADD COLUMN grpc_status Int32 DEFAULT -1 AFTER upstream_addr;
ALTER TABLE {database}.events ADD COLUMN ws_close_code Int32 DEFAULT -1 AFTER grpc_status;
ALTER TABLE {database}.events ADD COLUMN cache_hit UInt8 DEFAULT 0 AFTER ws_close_code;

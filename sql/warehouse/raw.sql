-- raw: every accepted row of every ingested file, as it came plus the parsed timestamp and
-- rating; appended by steps/append_raw.sql from staged.
create table if not exists raw (
    batch_id varchar not null,
    source_file varchar not null,
    source_hash varchar not null,
    line_no bigint not null,            -- 1-based line of the file (Parquet: row number)
    pos integer not null,               -- position of the item within a LightGCN line
    seq bigint not null,                -- global ingestion order (batch, line, position)
    user_id varchar not null,           -- ids as they came
    item_id varchar not null,
    timestamp_raw varchar,
    rating_raw varchar,
    "timestamp" bigint,                 -- parsed: unix seconds (UTC)
    rating double,                      -- parsed rating / weight
    split_role varchar
);

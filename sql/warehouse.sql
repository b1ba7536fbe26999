-- The ingestion tables of the warehouse: batches (one row per ingested file), raw (every
-- accepted row as it came) and quarantine (every rejected row with its reason).
-- Every input row of a batch is in exactly one of raw or quarantine.
create table if not exists batches (
    batch_id varchar primary key,       -- first 16 hex digits of the content hash
    batch_no integer not null,          -- ingestion order of the batch
    source_file varchar not null,
    source_hash varchar not null,         -- sha256 of the file's bytes
    format varchar not null,
    split_role varchar,                 -- train / test for the predefined split, else null
    columns varchar not null,           -- role -> column of the file, as JSON
    rows bigint not null,
    accepted bigint not null,
    quarantined bigint not null,
    ingested_at timestamptz not null
);

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

create table if not exists quarantine (
    batch_id varchar not null,
    source_file varchar not null,
    source_hash varchar not null,
    line_no bigint not null,
    pos integer not null,
    seq bigint not null,
    raw_line varchar,
    user_id varchar,
    item_id varchar,
    timestamp_raw varchar,
    rating_raw varchar,
    reason varchar not null
);

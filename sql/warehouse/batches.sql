-- batches: one row per ingested file (its content hash, format, row counts), written by
-- steps/append_batch.sql. Every input row of a batch is in exactly one of raw or quarantine.
create table if not exists batches (
    batch_id varchar primary key,       -- first 16 hex digits of the content hash
    batch_no integer not null,          -- ingestion order of the batch
    source_file varchar not null,
    source_hash varchar not null,       -- sha256 of the file's bytes
    format varchar not null,
    split_role varchar,                 -- train / test for the predefined split, else null
    columns varchar not null,           -- role -> column of the file, as JSON
    rows bigint not null,
    accepted bigint not null,
    quarantined bigint not null,
    ingested_at timestamptz not null
);

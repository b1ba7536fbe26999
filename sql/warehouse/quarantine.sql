-- quarantine: every rejected row of every ingested file with its source line and reason;
-- appended by steps/append_quarantine.sql from staged.
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

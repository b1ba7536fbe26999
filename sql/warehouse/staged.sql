-- staged (temp): one file's rows (the Arrow table registered as staged_arrow), typed and
-- checked: `reason` is null for an accepted row, else why it goes to quarantine. Timestamps:
-- unix seconds (integer or decimal) or ISO-8601 datetimes (UTC unless an offset is given),
-- 1900..2100.
create or replace temp table staged as
with source as (
    select
        line_no, pos, raw,
        nullif(trim(user_id), '') as user_id,
        nullif(trim(item_id), '') as item_id,
        nullif(trim("timestamp"), '') as timestamp_raw,
        nullif(trim(rating), '') as rating_raw,
        error
    from staged_arrow
),

ordered as (
    select
        *,
        (select coalesce(max(seq), -1) + 1 from (select seq from raw union all select seq from quarantine))
            + line_no * $seq_stride + pos as seq
    from source
),

parsed as (
    select
        *,
        coalesce(
            try_cast(timestamp_raw as bigint),
            try_cast(floor(try_cast(timestamp_raw as double)) as bigint),
            epoch(try_cast(timestamp_raw as timestamptz))::bigint
        ) as ts,
        try_cast(rating_raw as double) as rating
    from ordered
),

checked as (
    select
        *,
        case
            when error is not null then error
            when user_id is null then 'missing user id'
            when item_id is null then 'missing item id'
            when regexp_matches(user_id, '[[:cntrl:]"]') then 'unparseable user id'
            when regexp_matches(item_id, '[[:cntrl:]"]') then 'unparseable item id'
            when $has_timestamp and timestamp_raw is null then 'missing timestamp'
            when $has_timestamp and ts is null then 'bad timestamp: not unix seconds or an ISO datetime'
            when $has_timestamp and ts not between -2208988800 and 4102444800 then 'bad timestamp: outside 1900..2100'
            when $has_rating and rating_raw is null then 'missing rating'
            when $has_rating and (rating is null or isnan(rating)) then 'rating not a number'
            when $has_rating and (rating < coalesce($rating_min, rating) or rating > coalesce($rating_max, rating))
                then 'rating out of range [' || coalesce($rating_min::varchar, '-inf') || ', '
                    || coalesce($rating_max::varchar, 'inf') || ']'
        end as reason
    from parsed
)

select
    $batch_id as batch_id,
    $source_file as source_file,
    $source_hash as source_hash,
    line_no, pos, seq, raw, user_id, item_id, timestamp_raw, rating_raw, ts, rating,
    $split_role::varchar as split_role,
    reason
from checked;

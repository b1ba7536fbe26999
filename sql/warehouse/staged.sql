-- staged (temp): one file's rows (the Arrow table registered as staged_arrow), typed and checked: `reason` is
-- null for an accepted row, else why it goes to quarantine. Ids are kept exactly as written (a
-- blank one is missing). Timestamps: ISO-8601 datetimes (UTC unless an offset is given) or
-- numbers in $timestamp_unit ('s', 'ms', 'us'; 'auto': one unit per file from the median
-- magnitude: < 1e11 seconds, < 1e14 milliseconds, else microseconds; 'iso': no numbers), floored
-- to unix seconds, 1900..2100.
create or replace temp table staged as
with source as (
    select
        line_no, pos, raw,
        case when trim(user_id) <> '' then user_id end as user_id,
        case when trim(item_id) <> '' then item_id end as item_id,
        nullif(trim("timestamp"), '') as timestamp_raw,
        nullif(trim(rating), '') as rating_raw,
        error
    from staged_arrow
),

ordered as (
    select
        *,
        (select coalesce(max(seq), -1) + 1 from (select seq from raw union all select seq from quarantine))
            + line_no * $seq_stride + pos as seq,
        try_cast(timestamp_raw as double) as ts_number
    from source
),

unit as (
    select
        case
            when $timestamp_unit <> 'auto' then $timestamp_unit
            when median(abs(ts_number)) filter (where isfinite(ts_number)) >= 1e14 then 'us'
            when median(abs(ts_number)) filter (where isfinite(ts_number)) >= 1e11 then 'ms'
            else 's'
        end as ts_unit
    from ordered
),

parsed as (
    select
        ordered.*,
        unit.ts_unit,
        case
            when ts_number is null or unit.ts_unit = 'iso' then try_cast(floor(epoch(try_cast(timestamp_raw as timestamptz))) as bigint)
            when unit.ts_unit = 's' then try_cast(floor(ts_number) as bigint)  -- exact below 2^53
            when unit.ts_unit = 'ms' then try_cast(floor(ts_number / 1e3) as bigint)
            else try_cast(floor(ts_number / 1e6) as bigint)
        end as ts,
        case unit.ts_unit
            when 'ms' then 'unix milliseconds' when 'us' then 'unix microseconds' else 'unix seconds'
        end as ts_unit_name,
        try_cast(rating_raw as double) as rating
    from ordered, unit
),

checked as (
    select
        *,
        case
            when error is not null then error
            when user_id is null then 'missing user id'
            when item_id is null then 'missing item id'
            when regexp_matches(user_id, '[[:cntrl:]]') then 'unparseable user id'
            when regexp_matches(item_id, '[[:cntrl:]]') then 'unparseable item id'
            when $has_timestamp and timestamp_raw is null then 'missing timestamp'
            when $has_timestamp and ts is null and ts_unit = 'iso' then 'bad timestamp: not an ISO datetime'
            when $has_timestamp and ts is null then 'bad timestamp: not ' || ts_unit_name || ' or an ISO datetime'
            when $has_timestamp and ts not between -2208988800 and 4102444800
                then 'bad timestamp: outside 1900..2100'
                    || case when ts_number is null or ts_unit = 'iso' then '' else ' as ' || ts_unit_name end
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

-- rows whose timestamp failed (ingest stops a file where that is most: a wrong unit, not bad rows)
select count(*) filter (where reason like 'bad timestamp%') as bad_timestamps, count(*) as rows
from staged;

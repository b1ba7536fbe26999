-- One delimited file read by DuckDB's CSV reader into the temp table csv_rows (every field as
-- written, varchar, in file order); the lines it cannot parse are returned, one row per line:
-- `line` is DuckDB's line number (physical line minus the line breaks inside quoted fields
-- before it), `raw` the source text, `breaks` the line breaks inside it, `reason` why.
drop table if exists csv_rejects;
drop table if exists csv_reject_scans;
create or replace temp table csv_rows as
select *
from read_csv(
    $path, columns = $columns, delim = $delimiter, header = $header, quote = '"', escape = '"',
    auto_detect = false, strict_mode = true, null_padding = false, compression = 'auto',
    store_rejects = true, rejects_table = 'csv_rejects', rejects_scan = 'csv_reject_scans', rejects_limit = 0
);
with errors as (
    select
        line,
        rtrim(ltrim(csv_line, chr(13) || chr(10)), chr(13) || chr(10)) as raw,
        error_type,
        error_message,
        try_cast(regexp_extract(error_message, 'Found: (\d+)', 1) as integer) as found,
        try_cast(regexp_extract(error_message, 'Expected Number of Columns: (\d+)', 1) as integer) as expected
    from csv_rejects
),

per_line as (
    select
        line,
        any_value(raw) as raw,
        -- a line can fail several ways; a wrong field count says the most
        arg_min(error_type, error_type not like '%COLUMNS') as error_type,
        arg_min(error_message, error_type not like '%COLUMNS') as error_message,
        case when bool_or(error_type = 'TOO MANY COLUMNS') then max(found) else min(found) end as found,
        max(expected) as expected
    from errors
    group by line
)

select
    line,
    raw,
    length(raw) - length(replace(raw, chr(10), '')) as breaks,
    case
        when error_type like '%COLUMNS'
            then 'malformed line: ' || found || ' field(s), expected ' || expected
        else 'malformed line: ' || lower(error_type) || ' (' || error_message || ')'
    end as reason
from per_line
where trim(raw, chr(32) || chr(9) || chr(13) || chr(10)) <> ''  -- a blank line is not a row
order by line;

-- Append the rejected rows of the staged file to quarantine, with the source line and reason.
insert into quarantine by name
with rejected as (
    select * from staged where reason is not null
)

select
    batch_id, source_file, source_hash, line_no, pos, seq,
    coalesce(raw, concat_ws(chr(9), user_id, item_id, timestamp_raw, rating_raw)) as raw_line,
    user_id, item_id, timestamp_raw, rating_raw, reason
from rejected;

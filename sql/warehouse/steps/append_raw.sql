-- Append the accepted rows of the staged file to raw (values as they came, plus parsed ones).
insert into raw by name
with accepted as (
    select * from staged where reason is null
)

select
    batch_id, source_file, source_hash, line_no, pos, seq, user_id, item_id,
    timestamp_raw, rating_raw, ts as "timestamp", rating, split_role
from accepted;

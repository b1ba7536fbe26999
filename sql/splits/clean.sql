-- clean: implicit feedback (rating >= $rating_threshold when given; rows without a rating are
-- then dropped), duplicates (user, item) collapsed into one row keeping the first timestamp,
-- the first ingestion order, the split role of the first row, and the number of raw rows
-- (`count`). Keys are the integers of user_ids / item_ids (strings are joined back on output).
create or replace table clean as
with source as (
    select user_id, item_id, "timestamp", rating, seq, split_role from raw
),

implicit as (
    select * from source
    where $rating_threshold::double is null or rating >= $rating_threshold::double
),

keyed as (
    select user_ids.u, item_ids.i, implicit."timestamp", implicit.seq, implicit.split_role
    from implicit
    join user_ids using (user_id)
    join item_ids using (item_id)
)

select
    u,
    i,
    min("timestamp") as "timestamp",
    min(seq) as seq,
    arg_min(split_role, seq) as split_role,
    count(*) as "count"
from keyed
group by u, i;

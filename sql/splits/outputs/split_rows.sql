-- The rows of one split ($split) in dense ids, sorted; rows with a user or item not in train
-- (cold) are left out here and counted by probes/split_counts.sql.
with mapped as (
    select split.split, user_map.user_idx, item_map.item_idx, split."timestamp"
    from split
    join user_map using (u)
    join item_map using (i)
)

select user_idx, item_idx, "timestamp"::bigint as "timestamp"
from mapped
where split = $split
order by user_idx, item_idx;

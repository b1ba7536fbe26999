-- Rows per split before and after dropping cold rows (user or item not in train).
with mapped as (
    select split.split, user_map.user_idx, item_map.item_idx
    from split
    left join user_map using (u)
    left join item_map using (i)
)

select
    split,
    count(*) as rows,
    count(*) filter (where user_idx is null or item_idx is null) as cold
from mapped
group by split;

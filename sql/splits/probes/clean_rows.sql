-- The rows of clean as the `clean` contract sees them (original ids joined back).
with rows as (
    select user_ids.user_id, item_ids.item_id, clean."timestamp", clean."count"
    from clean
    join user_ids using (u)
    join item_ids using (i)
)

select user_id, item_id, "timestamp", "count" from rows;

-- The rows of kcore as the `kcore` contract sees them (original ids joined back).
with rows as (
    select user_ids.user_id, item_ids.item_id, kcore."timestamp", kcore."count"
    from kcore
    join user_ids using (u)
    join item_ids using (i)
)

select user_id, item_id, "timestamp", "count" from rows;

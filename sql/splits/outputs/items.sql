-- items.parquet: the item id map (dense item_idx, original item_id, train interactions).
select item_idx, item_id, n_train from item_map order by item_idx;

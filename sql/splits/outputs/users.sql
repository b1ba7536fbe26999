-- users.parquet: the user id map (dense user_idx, original user_id, train interactions).
select user_idx, user_id, n_train from user_map order by user_idx;

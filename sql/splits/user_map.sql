-- user_map: dense user_idx 0..n-1 over the users of the train split, in id order (u).
create or replace table user_map as
with train as (
    select u from split where split = 'train'
),

counts as (
    select u, count(*) as n_train from train group by u
)

select (row_number() over (order by counts.u) - 1)::integer as user_idx, user_ids.user_id, counts.n_train::integer as n_train, counts.u
from counts
join user_ids using (u);

-- user_ids: a dense integer key per distinct raw user id, in id order: numeric when every id is
-- an integer (so 0-based integer ids keep their value), else by string.
create or replace table user_ids as
with ids as (
    select distinct user_id from raw
),

numbered as (
    select user_id, case when regexp_full_match(user_id, '-?[0-9]{1,30}') then user_id::hugeint end as num
    from ids
),

flags as (
    select bool_and(num is not null) as all_int from numbered
)

select user_id, (row_number() over (order by case when all_int then num end, user_id) - 1)::integer as u
from numbered, flags;

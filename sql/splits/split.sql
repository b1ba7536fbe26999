-- split: every kcore row assigned to train / valid / test, per user, seeded and reproducible.
--   random     order by hash(u, i, $seed); first round(n * $train_ratio) -> train, next up to
--              round(n * ($train_ratio + $valid_ratio)) -> valid, rest -> test
--   temporal   the same cut-offs over (timestamp, ingestion order): the last items -> valid/test
--   loo        last -> test, second last -> valid (users with 2 rows: 1 train + 1 test)
--   predefined rows ingested with split_role 'test' -> test; of the train rows, the last
--              floor(n * $valid_ratio) in hash order -> valid
-- Every user with a train-role row keeps at least one train row.
create or replace table split as
with source as (
    select u, i, "timestamp", seq, split_role from kcore
),

keyed as (
    select
        *,
        case when $method = 'predefined' then coalesce(split_role, 'train') else 'all' end as part,
        case when $method in ('random', 'predefined') then hash(u, i, $seed::bigint) else 0 end as shuffle
    from source
),

ranked as (
    select
        *,
        count(*) over (partition by u, part) as n,
        row_number() over (partition by u, part order by shuffle, "timestamp" nulls first, seq) - 1 as r
    from keyed
),

cutoffs as (
    select
        *,
        greatest(1, round(n * $train_ratio::double)) as train_end,
        greatest(greatest(1, round(n * $train_ratio::double)), round(n * ($train_ratio::double + $valid_ratio::double))) as valid_end,
        least(floor(n * $valid_ratio::double), n - 1) as n_valid
    from ranked
)

select
    u, i, "timestamp", seq,
    case
        when $method = 'predefined' then
            case when part = 'test' then 'test' when r < n - n_valid then 'train' else 'valid' end
        when $method = 'loo' then
            case when n >= 3 and r = n - 2 then 'valid' when n >= 2 and r = n - 1 then 'test' else 'train' end
        else
            case when r < train_end then 'train' when r < valid_end then 'valid' else 'test' end
    end as split
from cutoffs;

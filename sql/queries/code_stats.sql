-- code_stats: one row per side (users, items) of the code version in views.sql: rows, bit
-- width, bytes per code, distinct codes and the share of rows whose code another row shares
-- (collisions: rows the codes cannot tell apart), scale range, and for 1-bit codes the mean
-- share of +1 signs (0.5 = balanced bits). No parameters.
with
sides as (
    select 'users' as side, bits, code, scale from user_codes
    union all
    select 'items' as side, bits, code, scale from item_codes
),
code_counts as (
    select side, code, count(*) as n
    from sides
    group by side, code
),
collisions as (
    select side, sum(n) filter (where n > 1) as rows_sharing_a_code
    from code_counts
    group by side
),
dims as (
    select dim from code_manifest
),
stats as (
    select
        s.side,
        min(s.bits) as bits,
        count(*) as rows,
        min(octet_length(s.code)) as code_bytes,
        count(distinct s.code) as distinct_codes,
        min(s.scale) as scale_min,
        avg(s.scale) as scale_mean,
        max(s.scale) as scale_max,
        case when min(s.bits) = 1 then avg(bit_count(s.code::bit)) / min(d.dim) end as one_bit_share
    from sides as s
    cross join dims as d
    group by s.side
)
select
    stats.*,
    coalesce(c.rows_sharing_a_code, 0) / stats.rows as collision_share
from stats
join collisions as c using (side)
order by side;

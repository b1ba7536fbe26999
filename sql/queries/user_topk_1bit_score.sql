-- user_topk_1bit_score: the $k best items for user $user_id (original id) from 1-bit codes by
-- the model's own score, still XOR + popcount: (dim - 2 * hamming) * s_i. The user's scale never
-- changes a user's ranking, so it is left out of the key. Prefer this to user_topk_hamming.sql:
-- pure Hamming ranking ignores the item scale, which carries much of what 1-bit models learn
-- (on the bundled demo, test Recall@20 0.137 by Hamming vs 0.346 by this score; see
-- `hqgnn evaluate`, variants codes_hamming vs codes). This is the ranking of `hqgnn recommend`
-- and of hqgnn.retrieval with rank_by="score" (float32 arithmetic, ties: lower item_idx first).
-- Needs views.sql. Seen (train) items are NOT masked (`hqgnn recommend` masks them).
with
the_user as (
    select code, scale
    from user_codes
    where user_id = $user_id
),

dims as (
    select dim from code_manifest
),

scored as (
    select
        i.item_idx,
        i.item_id,
        bit_count(xor(u.code::bit, i.code::bit)) as hamming,
        (d.dim - 2 * bit_count(xor(u.code::bit, i.code::bit)))::float * i.scale as rank_key,
        u.scale as user_scale
    from item_codes as i
    cross join the_user as u
    cross join dims as d
)

select
    row_number() over (order by rank_key desc, item_idx) as rank,
    item_id,
    item_idx,
    hamming,
    user_scale * rank_key as score
from scored
order by rank_key desc, item_idx
limit $k;

-- user_topk_inner_product: the $k best items for user $user_id (original id) for b-bit codes
-- (2, 4, 8 bits) by integer inner product x item scale, and for 32-bit (float) exports by the
-- float inner product, and for float-users exports (float32 users, code_manifest.user_bits = 32)
-- by the float user vector against the item codes of any width. Ranking key: <q_u, q_i> * s_i in float32, the arithmetic of
-- hqgnn.retrieval (the user's scale never changes a user's ranking). Ties: lower item_idx first.
-- Needs views.sql. Seen (train) items are NOT masked (`hqgnn recommend` masks them).
-- score: the model's score s_u * s_i * <q_u, q_i>.
with
the_user as (
    select code_values, scale
    from user_codes
    where user_id = $user_id
),
scored as (
    select
        i.item_idx,
        i.item_id,
        list_dot_product(u.code_values, i.code_values) as inner_product,
        list_dot_product(u.code_values, i.code_values)::float * i.scale as rank_key,
        u.scale as user_scale
    from item_codes as i
    cross join the_user as u
)
select
    row_number() over (order by rank_key desc, item_idx) as rank,
    item_id,
    item_idx,
    inner_product,
    user_scale * rank_key as score
from scored
order by rank_key desc, item_idx
limit $k;

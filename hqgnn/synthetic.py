"""Seeded generator of realistic implicit-feedback logs (the bundled, redistributable demo data).

The log has the structure real interaction data has, so every stage has something to find:

- power-law item popularity (Zipf) and heavy-tailed user activity (log-normal);
- latent preferences: items belong to topics, users to a home topic; most of a user's events
  come from their home topic, the rest from global popularity (so a recommender can beat the
  popularity baseline, and popularity still matters);
- timestamps: each user is active over a window, events spaced by exponential gaps;
- ratings 1..5, higher inside the home topic; repeated (user, item) events, as real logs have.

Everything is vectorized (O(rows log items)), so the same generator serves the 10 M-row
pipeline benchmark. Only numpy and pyarrow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

START_UNIX = 1_640_995_200  # 2022-01-01T00:00:00Z


@dataclass(frozen=True)
class SyntheticSpec:
    """Size and shape of a generated log (defaults: the bundled demo dataset)."""

    num_users: int = 3000
    num_items: int = 3000
    mean_events_per_user: float = 40.0
    num_topics: int = 20
    topic_affinity: float = 0.8  # share of a user's events drawn from the home topic
    zipf_exponent: float = 0.7
    min_events_per_user: int = 12
    bad_rows: int = 0  # malformed rows appended (missing ids, bad timestamps) to exercise quarantine
    seed: int = 7


def generate_interactions(spec: SyntheticSpec = SyntheticSpec()) -> pa.Table:
    """Generate the log as an Arrow table.

    Returns columns ``user_id: string, item_id: string, timestamp: string, rating: string``
    (strings, as a raw CSV file would hold them), ``rows ≈ num_users * mean_events_per_user``.
    """
    rng = np.random.default_rng(spec.seed)
    n_u, n_i, n_t = spec.num_users, spec.num_items, spec.num_topics

    # Items: topic and Zipf popularity (a random permutation so popularity is not id order).
    item_topic = rng.integers(0, n_t, n_i)
    pop = 1.0 / np.arange(1, n_i + 1) ** spec.zipf_exponent
    pop = pop[rng.permutation(n_i)]
    global_cdf = np.cumsum(pop) / pop.sum()
    order = np.argsort(item_topic, kind="stable")  # items grouped by topic
    topic_start = np.searchsorted(item_topic[order], np.arange(n_t))
    topic_end = np.searchsorted(item_topic[order], np.arange(n_t), side="right")
    topic_cdf = np.empty(n_i)
    for t in range(n_t):  # per-topic popularity CDFs, laid out in `order`
        p = pop[order[topic_start[t] : topic_end[t]]]
        topic_cdf[topic_start[t] : topic_end[t]] = np.cumsum(p) / max(p.sum(), 1e-12)

    # Users: heavy-tailed activity, a home topic, an activity window.
    sigma = 1.0
    mu = np.log(max(spec.mean_events_per_user - spec.min_events_per_user, 1.0)) - sigma**2 / 2
    counts = spec.min_events_per_user + rng.lognormal(mu, sigma, n_u).astype(np.int64)
    counts = np.minimum(counts, max(n_i // 2, spec.min_events_per_user))
    home = rng.integers(0, n_t, n_u)
    users = np.repeat(np.arange(n_u), counts)
    n = users.size

    # Items: home topic (popularity within topic) or global popularity.
    in_topic = rng.random(n) < spec.topic_affinity
    items = np.searchsorted(global_cdf, rng.random(n)).clip(max=n_i - 1)
    topic = home[users[in_topic]]
    lo, hi = topic_start[topic], topic_end[topic]
    empty = hi <= lo
    pos = _topic_pick(topic_cdf, topic_start, lo, rng.random(topic.size))
    pos = np.minimum(pos, np.maximum(hi - 1, lo))
    picked = order[pos]
    picked[empty] = items[in_topic][empty]
    items[in_topic] = picked

    # Timestamps: per-user window start + cumulative exponential gaps (hours).
    user_start = START_UNIX + rng.integers(0, 300 * 86_400, n_u)
    gaps = rng.exponential(3600.0 * 18, n).astype(np.int64)
    first = np.zeros(n, dtype=bool)
    first[np.concatenate([[0], np.cumsum(counts)[:-1]])] = True
    cum = np.cumsum(gaps)
    base = np.repeat(cum[first] - gaps[first], counts)
    ts = user_start[users] + (cum - base)

    # Ratings: higher inside the home topic.
    rating = np.clip(np.rint(rng.normal(np.where(in_topic, 4.0, 2.8), 0.9)), 1, 5).astype(np.int64)

    table = pa.table(
        {
            "user_id": _prefixed("u", users),
            "item_id": _prefixed("i", items),
            "timestamp": pc.cast(pa.array(ts), pa.string()),
            "rating": pc.cast(pa.array(rating), pa.string()),
        }
    )
    if spec.bad_rows:
        table = pa.concat_tables([table, _bad_rows(spec.bad_rows, rng)])
    return table


def _topic_pick(cdf: np.ndarray, starts: np.ndarray, lo: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Vectorized inverse-CDF pick inside segments of a concatenated per-segment CDF.

    ``cdf[starts[t]:starts[t+1]]`` is segment t's CDF (ending at 1); ``lo`` is the start of the
    segment each pick belongs to. Adding the segment index to each segment's CDF makes the whole
    array monotone, so one ``searchsorted`` finds every pick.
    """
    seg = np.zeros(cdf.size + 1, dtype=np.int64)
    seg[np.unique(starts)] = 1
    seg = np.cumsum(seg)[: cdf.size]
    target = r + seg[np.minimum(lo, cdf.size - 1)]
    return np.searchsorted(cdf + seg, target)


def _prefixed(prefix: str, ids: np.ndarray) -> pa.Array:
    """String ids such as ``u17`` from integer ids (vectorized in Arrow)."""
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(ids), pa.string()), "")


def _bad_rows(k: int, rng: np.random.Generator) -> pa.Table:
    """``k`` malformed rows: missing user, missing item, unparseable timestamp, rating out of range."""
    kinds = [("", "i1", "1650000000", "4"), ("u1", "", "1650000000", "4"), ("u1", "i2", "not-a-time", "3"), ("u2", "i3", "1650000000", "-7")]
    rows = [kinds[i % len(kinds)] for i in range(k)]
    cols = list(zip(*rows, strict=True))
    return pa.table({name: pa.array(list(c), pa.string()) for name, c in zip(["user_id", "item_id", "timestamp", "rating"], cols, strict=True)})


def write_interactions(path: Path, spec: SyntheticSpec = SyntheticSpec()) -> Path:
    """Generate a log and write it as CSV (header ``user_id,item_id,timestamp,rating``) or Parquet
    (by the suffix of ``path``). Returns ``path``."""
    table = generate_interactions(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="none"))
    return path

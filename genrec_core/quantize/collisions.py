"""Making Semantic IDs unique.

`dedup_digit` (TIGER) appends one code that numbers the items sharing a semantic prefix. The order
within a group is by a caller-given key (the item id), so reruns hand out the same digits.

`cap_reassign` (FORGE), `rrs` and `ecm` (Purely Semantic Indexing) keep SIDs L codes long and move
colliding items to nearby free SIDs instead; see `resolve` and the section below for the two-phase
structure that lets Spark run phase 1 per first-level code.
"""
from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

import numpy as np

from genrec_core.quantize import registry


def dedup_digit(codes: np.ndarray, order_key: np.ndarray) -> np.ndarray:
    """codes: int [n, L], order_key: [n] sortable (unique) -> int64 [n, L+1] with unique rows."""
    n = codes.shape[0]
    if n == 0:
        return np.zeros((0, codes.shape[1] + 1), dtype=np.int64)
    # lexsort sorts by the last key first: group by the codes, then by order_key inside a group.
    order = np.lexsort((order_key,) + tuple(codes[:, l] for l in reversed(range(codes.shape[1]))))
    sorted_codes = codes[order]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = (sorted_codes[1:] != sorted_codes[:-1]).any(axis=1)
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    digit = np.empty(n, dtype=np.int64)
    digit[order] = np.arange(n) - group_start
    return np.concatenate([codes.astype(np.int64), digit[:, None]], axis=1)


def dedup_digit_reference(codes: np.ndarray, order_key) -> np.ndarray:
    seen: dict[tuple, list] = {}
    for i in sorted(range(len(order_key)), key=lambda i: order_key[i]):
        seen.setdefault(tuple(int(c) for c in codes[i]), []).append(i)
    digit = np.zeros(len(order_key), dtype=np.int64)
    for members in seen.values():
        for rank, i in enumerate(members):
            digit[i] = rank
    return np.concatenate([np.asarray(codes, dtype=np.int64), digit[:, None]], axis=1)


def sid_strings(codes: np.ndarray) -> list[str]:
    return ["-".join(str(int(c)) for c in row) for row in codes]


# --------------------------------------------------------------------------------------------------
# Unique SIDs without an extra token: cap_reassign (FORGE), rrs and ecm (Purely Semantic Indexing).
#
# Every strategy runs in two phases so Spark can distribute phase 1:
#   1. per group of items sharing the greedy first code, only SIDs under that code are searched;
#      groups own disjoint SID spaces, so any group order (or parallelism) gives the same result;
#   2. the overflow (items phase 1 could not place) is placed globally against the SIDs taken.
# An item's candidates are the greedy SID, then every SID reachable through the top
# `candidates_per_level` codes per level (ranked by `level_distances`, ties by code index), in
# depth-first order. The cost of a SID is its last-level distance (= total error for residual
# quantizers). Items whose greedy SID has room are never moved. Nothing is widened silently: an item
# whose candidates are all taken is reported in `unplaced` and keeps its greedy SID.
# --------------------------------------------------------------------------------------------------

STRATEGIES = tuple(registry.COLLISIONS)

# Rows of (item, partial path) per level_distances call: bounds memory to about this many x K floats.
_BATCH_ROWS = 1 << 14


@dataclass(frozen=True)
class Resolution:
    """codes: int64 [n, L] ([n, L+1] for dedup_digit). unplaced: int64 row indices (ascending) that got
    no SID of their own and keep their greedy SID. moved: rows whose SID differs from the greedy one."""

    codes: np.ndarray
    unplaced: np.ndarray
    moved: int


def resolve(strategy, tok, z, codes, order_key, cfg) -> Resolution:
    """Single process: phase 1 per first code (ascending), then phase 2 over the overflow.
    z: latents [n, d] (tok.latent(x)); codes: greedy int [n, L]; order_key: unique sortable [n]."""
    strategy = _strategy(strategy, cfg)
    codes, order_key = np.asarray(codes, dtype=np.int64), np.asarray(order_key)
    if strategy == "dedup_digit":
        return Resolution(dedup_digit(codes, order_key), _EMPTY, 0)
    _check(tok, z, codes, order_key)  # here too: phase 2 mixes groups, so keys must be unique across them
    out, overflow = codes.copy(), []
    for rows in _groups(codes[:, 0]):
        part = resolve_group(strategy, tok, z[rows], codes[rows], order_key[rows], cfg)
        out[rows] = part.codes
        overflow.append(rows[part.unplaced])
    left = np.sort(np.concatenate(overflow)) if overflow else _EMPTY
    placed = np.ones(len(codes), dtype=bool)
    placed[left] = False
    rest = resolve_overflow(strategy, tok, z[left], codes[left], order_key[left], out[placed], cfg)
    out[left] = rest.codes
    return Resolution(out, np.sort(left[rest.unplaced]), int((out != codes).any(1).sum()))


def resolve_group(strategy, tok, z, codes, order_key, cfg) -> Resolution:
    """Phase 1 for ONE group (every row shares codes[:, 0]); `unplaced` are the rows for phase 2.
    The row order of the input does not matter."""
    strategy = _strategy(strategy, cfg)
    codes, order_key = np.asarray(codes, dtype=np.int64), np.asarray(order_key)
    if len(codes) and (codes[:, 0] != codes[0, 0]).any():
        raise ValueError("resolve_group needs rows that all share their first-level code")
    if strategy == "dedup_digit":
        # The digit numbers items within one full semantic code, so it is local to the group.
        return Resolution(dedup_digit(codes, order_key), _EMPTY, 0)
    return _run_phase(strategy, tok, z, codes, order_key, cfg, taken=None)


def resolve_overflow(strategy, tok, z, codes, order_key, taken, cfg) -> Resolution:
    """Phase 2: places rows (any first code allowed) against `taken` int [m, L], the SIDs already held
    (with multiplicity, which matters for cap_reassign). Only taken SIDs an item can reach (its greedy
    SID and the top candidates_per_level codes per level) affect the result."""
    strategy = _strategy(strategy, cfg)
    codes, order_key = np.asarray(codes, dtype=np.int64), np.asarray(order_key)
    if strategy == "dedup_digit":
        if len(codes):
            raise ValueError("dedup_digit has no overflow phase; every item gets a digit in phase 1")
        return Resolution(np.zeros((0, tok.levels + 1), dtype=np.int64), _EMPTY, 0)
    taken = np.asarray(taken, dtype=np.int64).reshape(-1, tok.levels)
    return _run_phase(strategy, tok, z, codes, order_key, cfg, taken=taken)


_EMPTY = np.zeros(0, dtype=np.int64)


def reachable_first_codes(tok, z: np.ndarray, semantic: np.ndarray, candidates: int) -> list[int]:
    """First-level codes that phase 2 may move these items under: their own and their top codes.
    Twice the search width is a superset that no tie-break difference can escape, so only taken
    SIDs under these codes can conflict with placing them."""
    first = np.argsort(tok.level_distances(z, np.zeros((len(z), 0), dtype=np.int64), 0), axis=1,
                       kind="stable")[:, :2 * candidates]
    return sorted({int(c) for c in first.ravel()} | {int(c) for c in np.asarray(semantic)[:, 0]})


def _strategy(strategy, cfg) -> str:
    strategy = cfg.collisions if strategy is None else strategy
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown collision strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    return strategy


def _groups(first: np.ndarray) -> list[np.ndarray]:
    """Row indices per first-level code, codes ascending, rows ascending inside a group."""
    order = np.argsort(first, kind="stable")
    bounds = np.flatnonzero(np.diff(first[order])) + 1
    return [rows for rows in np.split(order, bounds) if len(rows)]


def _check(tok, z, codes, order_key) -> None:
    n = len(codes)
    if codes.ndim != 2 or codes.shape[1] != tok.levels or len(z) != n or len(order_key) != n:
        raise ValueError(f"need codes [n, {tok.levels}], z [n, d] and order_key [n]; got {codes.shape}, "
                         f"{np.shape(z)}, {np.shape(order_key)}")
    if n and ((codes < 0) | (codes >= np.asarray(tok.level_sizes))).any():
        raise ValueError("codes out of range of the tokenizer's codebooks")
    if len(np.unique(order_key)) != n:
        raise ValueError("order_key must be unique: it is the tie-break that makes reruns identical")


def _run_phase(strategy, tok, z, codes, order_key, cfg, taken) -> Resolution:
    """Phase 1 when taken is None (one group), else phase 2. Rows are first put in order_key order so
    the float batches (BLAS rounding) and every tie-break are the same whatever the caller's order."""
    _check(tok, z, codes, order_key)
    canon = np.argsort(order_key, kind="stable")
    z_c = np.ascontiguousarray(np.asarray(z)[canon])
    codes_c = codes[canon]
    cap = cfg.cap if strategy == "cap_reassign" else 1
    if taken is None:
        keys = _sid_keys(codes_c, tok.level_sizes)
        cost = _crowded_cost(tok, z_c, codes_c, keys, cap)
        movers, occupancy = _split_group(strategy, keys, cost, cap)
        first = codes_c[movers, 0]
    else:
        cost = _sid_cost(tok, z_c, codes_c)
        movers, first = np.arange(len(codes_c)), None
        occupancy = Counter(_sid_keys(taken, tok.level_sizes).tolist())
    new, placed = _assign(strategy, tok, z_c[movers], codes_c[movers], cost[movers], first, occupancy,
                          cap, cfg.candidates_per_level)
    out_c = codes_c.copy()
    out_c[movers[placed]] = new[placed]
    out = np.empty_like(out_c)
    out[canon] = out_c
    unplaced = np.sort(canon[movers[~placed]])
    return Resolution(out, unplaced, int((out != codes).any(1).sum()))


def _crowded_cost(tok, z, codes, keys, cap) -> np.ndarray:
    """SID cost of rows on a SID with more than `cap` items; 0 elsewhere, where it decides nothing
    (those rows keep their SID). Skipping them saves most of phase 1's distance work."""
    inverse = np.unique(keys, return_inverse=True)[1].ravel()
    crowded = np.flatnonzero(np.bincount(inverse)[inverse] > cap)
    cost = np.zeros(len(codes), dtype=np.float64)
    if len(crowded):
        cost[crowded] = _sid_cost(tok, z[crowded], codes[crowded])
    return cost


def _split_group(strategy, keys, cost, cap):
    """Who keeps its greedy SID in phase 1 -> (mover rows, Counter of held SIDs).
    rrs / cap_reassign: the `cap` items closest to each SID (then by order) stay. ecm: only items alone
    on their SID stay; everyone in a collision enters the matching, which decides who keeps it."""
    n = len(keys)
    order = np.lexsort((np.arange(n), cost, keys))
    run_start = np.ones(n, dtype=bool)
    run_start[1:] = keys[order][1:] != keys[order][:-1]
    start_idx = np.maximum.accumulate(np.where(run_start, np.arange(n), 0))
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n) - start_idx
    if strategy == "ecm":
        inverse = np.unique(keys, return_inverse=True)[1].ravel()
        stay = np.bincount(inverse)[inverse] == 1
    else:
        stay = pos < cap
    return np.flatnonzero(~stay), Counter(keys[stay].tolist())


def _sid_keys(codes: np.ndarray, level_sizes) -> np.ndarray:
    """Mixed-radix int64 key per SID (last axis = levels), so SID sets are plain integer sets."""
    if float(np.prod([float(k) for k in level_sizes])) >= 2.0 ** 62:
        raise ValueError(f"SID space {level_sizes} is too large for int64 keys")
    keys = np.zeros(codes.shape[:-1], dtype=np.int64)
    for level, size in enumerate(level_sizes):
        keys = keys * int(size) + codes[..., level]
    return keys


def _level_distances(tok, z, prefix, level) -> np.ndarray:
    """tok.level_distances in batches of _BATCH_ROWS rows: float64 [n, K_level]."""
    out = np.empty((len(z), tok.level_sizes[level]), dtype=np.float64)
    for s in range(0, len(z), _BATCH_ROWS):
        out[s:s + _BATCH_ROWS] = tok.level_distances(z[s:s + _BATCH_ROWS], prefix[s:s + _BATCH_ROWS], level)
    return out


def _sid_cost(tok, z, codes) -> np.ndarray:
    """Last-level distance of each row's own SID: float64 [n]."""
    last = tok.levels - 1
    d = _level_distances(tok, z, codes[:, :last], last)
    return d[np.arange(len(codes)), codes[:, last]]


def _candidate_tree(tok, z, first, k):
    """Every SID reachable through the top-k codes per level, in depth-first order.
    first: int64 [n] holds level 1 fixed (phase 1), None searches it too (phase 2).
    -> sids int64 [n, C, L], cost float64 [n, C] (+inf where a code on the path is invalid)."""
    n, levels = len(z), tok.levels
    fixed = 0 if first is None else 1
    width = int(np.prod([min(k, size) for size in tok.level_sizes[fixed:]]))
    step = max(1, _BATCH_ROWS // width)  # items per chunk, so no chunk holds more than ~_BATCH_ROWS paths
    sids = np.empty((n, width, levels), dtype=np.int64)
    cost = np.empty((n, width), dtype=np.float64)
    for s in range(0, n, step):
        part = slice(s, s + step)
        sids[part], cost[part] = _tree_chunk(tok, z[part], None if first is None else first[part], k)
    return sids, cost


def _tree_chunk(tok, z, first, k):
    n = len(z)
    if first is None:
        paths, cost = np.zeros((n, 1, 0), dtype=np.int64), np.zeros((n, 1))
    elif tok.levels == 1:
        d0 = tok.level_distances(z, np.zeros((n, 0), dtype=np.int64), 0)
        paths, cost = first[:, None, None].astype(np.int64), d0[np.arange(n), first][:, None]
    else:
        # The greedy first code is valid by construction; only the levels below it carry a cost.
        paths, cost = first[:, None, None].astype(np.int64), np.zeros((n, 1))
    for level in range(paths.shape[2], tok.levels):
        paths, cost = _expand(tok, z, paths, cost, level, k)
    return paths, cost


def _expand(tok, z, paths, cost, level, k):
    """One level deeper: each path [n, m, level] gets its top-k children -> [n, m*k, level+1]."""
    n, m, _ = paths.shape
    d = tok.level_distances(np.repeat(z, m, axis=0), paths.reshape(n * m, level), level)
    top = np.argsort(d, axis=1, kind="stable")[:, :min(k, d.shape[1])]
    kk = top.shape[1]
    # A child of an invalid path stays invalid even where its own distance is finite.
    child = np.where(np.isfinite(cost.reshape(n * m, 1)), np.take_along_axis(d, top, 1), np.inf)
    parents = np.repeat(paths.reshape(n * m, 1, level), kk, axis=1)
    paths = np.concatenate([parents, top[:, :, None]], axis=2)
    return paths.reshape(n, m * kk, level + 1), child.reshape(n, m * kk)


def _candidates(tok, z, codes, cost, first, k):
    """Greedy SID first, then the depth-first tree (its copy of the greedy SID dropped).
    -> sids [n, 1+C, L], keys [n, 1+C], cost [n, 1+C] (+inf marks an unusable candidate)."""
    tree, tree_cost = _candidate_tree(tok, z, first, k)
    sids = np.concatenate([codes[:, None, :], tree], axis=1)
    keys = _sid_keys(sids, tok.level_sizes)
    cand_cost = np.concatenate([cost[:, None], tree_cost], axis=1)
    cand_cost[:, 1:][keys[:, 1:] == keys[:, :1]] = np.inf
    return sids, keys, cand_cost


def _assign(strategy, tok, z, codes, cost, first, occupancy, cap, k):
    """Places movers (rows in order_key order) -> (new codes [m, L], placed bool [m]). `occupancy`
    (SID key -> items holding it) is updated in place."""
    m = len(codes)
    if m == 0:
        return codes.copy(), np.zeros(0, dtype=bool)
    sids, keys, cand_cost = _candidates(tok, z, codes, cost, first, k)
    order = np.lexsort((np.arange(m), cost))  # the nearest items choose first
    if strategy == "ecm":
        choice = _match(keys, cand_cost, order, occupancy)
    else:
        if strategy == "cap_reassign":
            # nearest free SID: candidates by cost; the stable sort keeps depth-first order on ties
            pref = np.argsort(cand_cost, axis=1, kind="stable")
            sids, keys = np.take_along_axis(sids, pref[:, :, None], 1), np.take_along_axis(keys, pref, 1)
            cand_cost = np.take_along_axis(cand_cost, pref, 1)
        choice = _first_free(keys, cand_cost, order, occupancy, cap)
    placed = choice >= 0
    new = codes.copy()
    new[placed] = sids[np.flatnonzero(placed), choice[placed]]
    return new, placed


def _first_free(keys, cost, order, occupancy, cap) -> np.ndarray:
    """Each item in `order` takes its first usable candidate with fewer than `cap` holders.
    -> chosen column per item, -1 where every candidate is full."""
    choice = np.full(len(keys), -1, dtype=np.int64)
    key_rows, ok_rows = keys.tolist(), np.isfinite(cost).tolist()
    for i in order.tolist():
        for j, (key, ok) in enumerate(zip(key_rows[i], ok_rows[i])):
            if ok and occupancy.get(key, 0) < cap:
                occupancy[key] = occupancy.get(key, 0) + 1
                choice[i] = j
                break
    return choice


def _match(keys, cost, order, occupancy) -> np.ndarray:
    """ECM: min-cost one-to-one matching of items to free candidate SIDs, placing as many items as
    possible. Rows are in `order` and columns in SID-key order, so the solver sees the same matrix
    whatever the caller's row order. -> chosen column per item, -1 for unplaced."""
    from scipy.sparse import csr_matrix

    m = len(keys)
    keys, cost = keys[order], cost[order]
    usable = np.isfinite(cost)
    if occupancy:
        usable &= ~np.isin(keys, np.fromiter(occupancy, dtype=np.int64, count=len(occupancy)))
    rows, cols = np.nonzero(usable)
    choice = np.full(m, -1, dtype=np.int64)
    if rows.size == 0:
        return choice
    col_keys, col = np.unique(keys[rows, cols], return_inverse=True)
    w = cost[rows, cols]
    # LAPJVsp needs non-zero weights; a constant shift does not change which matching is cheapest
    # because every matched row pays it once.
    graph = csr_matrix((w - w.min() + 1.0, (rows, col.ravel())), shape=(m, len(col_keys)))
    r, c = _min_cost_max_matching(graph)
    hit = keys[r] == col_keys[c][:, None]
    choice[order[r]] = hit.argmax(axis=1)
    return choice


def _min_cost_max_matching(graph):
    """Cheapest matching among those of maximum size -> (rows, cols) of the real edges used."""
    from scipy.sparse import csr_matrix, hstack
    from scipy.sparse.csgraph import (
        maximum_bipartite_matching,
        min_weight_full_bipartite_matching,
    )

    m, n_cols = graph.shape
    graph.sort_indices()
    if (maximum_bipartite_matching(graph, perm_type="column") >= 0).all():
        return min_weight_full_bipartite_matching(graph)
    # Not every item can be placed: a private dummy SID per row costs more than any set of real edges,
    # so the solver first maximises how many items get a real SID, then minimises their cost.
    big = float(graph.data.max()) * (m + 1) + 1.0
    dummy = csr_matrix((np.full(m, big), (np.arange(m), np.arange(m))), shape=(m, m))
    r, c = min_weight_full_bipartite_matching(hstack([graph, dummy], format="csr"))
    real = c < n_cols
    return r[real], c[real]


# ----- slow references: one item and one tree node at a time; tests hold `resolve` to them -----

def rrs_reference(tok, z, codes, order_key, cfg) -> Resolution:
    """Recursive residual search as a plain recursive function, per item, with real backtracking."""
    return resolve_reference("rrs", tok, z, codes, order_key, cfg)


def resolve_reference(strategy, tok, z, codes, order_key, cfg) -> Resolution:
    """Same two phases and tie-breaks as `resolve`, written as loops over items and recursion over
    levels. ecm uses a dense scipy linear_sum_assignment instead of the sparse solver."""
    codes = np.asarray(codes, dtype=np.int64)
    cost = {i: _ref_cost(tok, z[i], codes[i]) for i in range(len(codes))}
    by_cost = lambda rows: sorted(rows, key=lambda i: (cost[i], order_key[i]))  # noqa: E731
    cap = cfg.cap if strategy == "cap_reassign" else 1
    out, overflow = codes.copy(), []
    for g in sorted({int(c) for c in codes[:, 0]}):
        rows = by_cost([i for i in range(len(codes)) if codes[i, 0] == g])
        held = Counter(tuple(codes[i]) for i in rows)
        seen, stay = Counter(), []
        for i in rows:  # nearest first: the first `cap` on a SID keep it (ecm: only an item alone on it)
            sid = tuple(codes[i])
            seen[sid] += 1
            if (held[sid] == 1 if strategy == "ecm" else seen[sid] <= cap):
                stay.append(i)
        occupancy = Counter(tuple(codes[i]) for i in stay)
        movers = [i for i in rows if i not in stay]
        overflow += _ref_place(strategy, tok, z, codes, cost, out, movers, occupancy, cfg, (g,))
    taken = Counter(tuple(out[i]) for i in range(len(codes)) if i not in overflow)
    unplaced = _ref_place(strategy, tok, z, codes, cost, out, by_cost(overflow), taken, cfg, ())
    return Resolution(out, np.array(sorted(unplaced), dtype=np.int64), int((out != codes).any(1).sum()))


def _ref_cost(tok, z1, sid) -> float:
    last = tok.levels - 1
    prefix = np.asarray(sid[:last], dtype=np.int64)[None]
    return float(tok.level_distances(z1[None], prefix, last)[0, sid[last]])


def _ref_leaves(tok, z1, prefix: tuple, k: int):
    """Yields (sid, cost) depth-first through the top-k codes per level below `prefix`."""
    level = len(prefix)
    if level == tok.levels:
        yield prefix, _ref_cost(tok, z1, prefix)
        return
    d = tok.level_distances(z1[None], np.asarray(prefix, dtype=np.int64).reshape(1, level), level)[0]
    for c in np.argsort(d, kind="stable")[:k]:
        if not np.isfinite(d[c]):
            continue
        if level + 1 == tok.levels:
            yield prefix + (int(c),), float(d[c])
        else:
            yield from _ref_leaves(tok, z1, prefix + (int(c),), k)


def _ref_options(tok, z1, greedy, greedy_cost, start, k):
    """The greedy SID, then the depth-first leaves without it."""
    rest = [(s, c) for s, c in _ref_leaves(tok, z1, start, k) if s != greedy]
    return [(greedy, greedy_cost)] + rest


def _ref_place(strategy, tok, z, codes, cost, out, movers, occupancy, cfg, start) -> list[int]:
    """Places `movers` (already in cost order) into `out`; returns the ones left unplaced."""
    k = cfg.candidates_per_level
    if strategy == "ecm":
        return _ref_match(tok, z, codes, cost, out, movers, occupancy, k, start)
    cap = cfg.cap if strategy == "cap_reassign" else 1
    unplaced = []
    for i in movers:
        greedy = tuple(int(c) for c in codes[i])
        if strategy == "rrs":
            # Real backtracking: the generator is lazy, so the search stops at the first free leaf.
            leaves = (s for s, _ in _ref_leaves(tok, z[i], start, k) if s != greedy)
            found = next((s for s in itertools.chain([greedy], leaves) if occupancy[s] < cap), None)
        else:
            options = sorted(_ref_options(tok, z[i], greedy, cost[i], start, k), key=lambda o: o[1])
            found = next((s for s, _ in options if occupancy[s] < cap), None)
        if found is None:
            unplaced.append(i)
        else:
            occupancy[found] += 1
            out[i] = found
    return unplaced


def _ref_match(tok, z, codes, cost, out, movers, occupancy, k, start) -> list[int]:
    """Dense min-cost assignment with one dummy column per item that costs more than any real set."""
    from scipy.optimize import linear_sum_assignment

    if not movers:
        return []
    options = [[(s, c) for s, c in _ref_options(tok, z[i], tuple(int(v) for v in codes[i]), cost[i], start, k)
                if occupancy[s] == 0] for i in movers]
    sids = sorted({s for row in options for s, _ in row})
    col = {s: j for j, s in enumerate(sids)}
    matrix = np.full((len(movers), len(sids) + len(movers)), np.inf)
    lowest = min((c for row in options for _, c in row), default=0.0)
    for r, row in enumerate(options):
        for s, c in row:
            matrix[r, col[s]] = c - lowest + 1.0
    finite = matrix[np.isfinite(matrix)]
    matrix[:, len(sids):] = (finite.max() if finite.size else 1.0) * (len(movers) + 1) + 1.0
    rows, cols = linear_sum_assignment(matrix)
    unplaced = []
    for r, j in zip(rows, cols):
        if j < len(sids):
            out[movers[r]] = sids[j]
        else:
            unplaced.append(movers[r])
    return unplaced

"""Pure parts of a SID map that lives night after night: placing new items under SIDs already taken,
aligning a refit's code labels to the published map, and measuring churn.

Nothing here reads a table: the tokenize stage hands in the published map as arrays. Codes are int64
[n, L] semantic codes, plus the dedup digit as a last column where the strategy is dedup_digit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genrec_core.quantize.collisions import resolve_overflow


@dataclass(frozen=True)
class Placement:
    """codes: int64 [m, width] for the new items, in their input order. overflow: rows that found no
    free SID (dedup_digit: the digit would outgrow `dedup_size`; others: no free candidate)."""

    codes: np.ndarray
    overflow: np.ndarray


def next_free_digit(semantic: np.ndarray, order_key: np.ndarray, taken: np.ndarray,
                    dedup_size: int) -> Placement:
    """dedup_digit under taken SIDs: each new item (in order_key order) gets the smallest digit that
    no taken SID and no earlier new item holds under its semantic code. taken: int [t, L+1]."""
    semantic = np.asarray(semantic, dtype=np.int64)
    if semantic.ndim != 2:
        raise ValueError(f"semantic codes must be [n, levels], got shape {semantic.shape}")
    levels = semantic.shape[1]
    held: dict[tuple, set[int]] = {}
    for row in np.asarray(taken, dtype=np.int64).reshape(-1, levels + 1).tolist():
        held.setdefault(tuple(row[:levels]), set()).add(row[levels])
    digits = np.zeros(len(semantic), dtype=np.int64)
    for i in np.argsort(np.asarray(order_key), kind="stable").tolist():
        used = held.setdefault(tuple(semantic[i].tolist()), set())
        d = 0
        while d in used:
            d += 1
        used.add(d)
        digits[i] = d
    codes = np.concatenate([semantic, digits[:, None]], axis=1)
    return Placement(codes, np.flatnonzero(digits >= dedup_size))


def place_new_items(strategy: str, tok, x: np.ndarray, order_key: np.ndarray, taken: np.ndarray, cfg,
                    dedup_size: int | None = None, semantic: np.ndarray | None = None) -> Placement:
    """New items' SIDs under the published tokenizer; a taken SID is never handed out, so no existing
    item moves. x: float32 [m, dim]; taken: the SIDs held by active and reserved items; semantic:
    tok.encode(x) when the caller has it already."""
    if semantic is None:
        semantic = tok.encode(x) if len(x) else np.zeros((0, tok.levels), dtype=np.int64)
    if strategy == "dedup_digit":
        return next_free_digit(semantic, order_key, taken, dedup_size if dedup_size is not None else 1 << 62)
    res = resolve_overflow(strategy, tok, tok.latent(x), semantic, order_key, taken, cfg)
    return Placement(res.codes, res.unplaced)


def align_labels(old: np.ndarray, new: np.ndarray, size: int) -> np.ndarray:
    """A permutation `relabel` [size] of one level's new codes that maximises how many items keep
    their old code (Hungarian on the overlap counts); old, new: int [n] for the same items."""
    from scipy.optimize import linear_sum_assignment

    overlap = np.zeros((size, size), dtype=np.int64)
    np.add.at(overlap, (np.asarray(new, dtype=np.int64), np.asarray(old, dtype=np.int64)), 1)
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    relabel = np.empty(size, dtype=np.int64)
    relabel[rows] = cols
    return relabel


def churn(old: np.ndarray, new: np.ndarray, semantic_levels: int) -> dict:
    """Shares of items (rows of old and new, the same items) whose full SID, semantic prefix
    (the first `semantic_levels` codes) and first code changed."""
    old, new = np.asarray(old, dtype=np.int64), np.asarray(new, dtype=np.int64)
    n = len(old)
    if n == 0:
        return {"churn_full": 0.0, "churn_prefix": 0.0, "churn_first": 0.0, "compared": 0}
    width = min(old.shape[1], new.shape[1])
    full = (old.shape[1] != new.shape[1]) | (old[:, :width] != new[:, :width]).any(1)
    return {"churn_full": float(full.mean()),
            "churn_prefix": float((old[:, :semantic_levels] != new[:, :semantic_levels]).any(1).mean()),
            "churn_first": float((old[:, 0] != new[:, 0]).mean()), "compared": int(n)}


def relabel_level(tok, level: int, relabel: np.ndarray):
    """The same tokenizer with level `level`'s codes renamed: an item once coded k is coded
    relabel[k]. Only the codebook rows move, so residuals, distances and every other level are
    untouched. Needs a tokenizer whose state holds one codebook per level."""
    from genrec_core.quantize import base

    arrays, header = tok.state()
    key = f"codebook_{level}"
    if key not in arrays:
        raise AlignmentUnsupported(
            f"the {header.get('kind')!r} tokenizer has no per-level codebook to relabel; "
            "set tokenize.align=false for a plain refit")
    book = np.asarray(arrays[key])
    moved = np.empty_like(book)
    moved[np.asarray(relabel, dtype=np.int64)] = book
    return base.from_state({**arrays, key: moved}, header)


class AlignmentUnsupported(ValueError):
    """The quantizer's codes cannot be renamed by permuting codebook rows."""


def align_tokenizer(tok, x: np.ndarray, old_codes: np.ndarray) -> tuple[object, list[int]]:
    """Renames each level's codes of a refitted tokenizer to agree as much as possible with the
    published codes `old_codes` [n, >= L] of the items x [n, dim]. Returns (tokenizer, levels aligned).

    Level codebooks of a residual quantizer are shared by every parent, so the match is per level:
    one Hungarian assignment on the overlap of old and new codes over all items. Renaming a level
    changes no residual, so one encoding serves every level. A level whose size changed is left as is."""
    new = tok.encode(x)
    old = np.asarray(old_codes, dtype=np.int64)
    aligned = []
    for level, size in enumerate(tok.level_sizes):
        if level >= old.shape[1] or int(old[:, level].max(initial=-1)) >= size:
            continue
        relabel = align_labels(old[:, level], new[:, level], size)
        if not np.array_equal(relabel, np.arange(size)):
            tok = relabel_level(tok, level, relabel)
        aligned.append(level)
    return tok, aligned


def dedup_codebook_size(largest_bucket: int, headroom: float) -> int:
    """Digits the dedup level holds: the fit's largest bucket plus `headroom` of it for items assigned later."""
    return max(1, int(np.ceil(largest_bucket * (1.0 + headroom))))


def new_item_collision_rate(semantic: np.ndarray, order_key: np.ndarray, taken_semantic: np.ndarray) -> float:
    """Share of new items whose semantic code was already held (by a taken SID or an earlier new item):
    the fit's collision rate, seen from the items placed later."""
    semantic = np.asarray(semantic, dtype=np.int64)
    if len(semantic) == 0:
        return 0.0
    held = {tuple(r) for r in np.asarray(taken_semantic, dtype=np.int64)[:, :semantic.shape[1]].tolist()}
    hits = 0
    for i in np.argsort(np.asarray(order_key), kind="stable").tolist():
        row = tuple(semantic[i].tolist())
        hits += row in held
        held.add(row)
    return hits / len(semantic)


def expected_collision_rate(items_per_code: np.ndarray) -> float:
    """Chance that one more item, drawn like the map's items, lands on a semantic code already held:
    1 - (codes held once) / items, the Good-Turing estimate. items_per_code: int [codes]."""
    counts = np.asarray(items_per_code, dtype=np.int64)
    total = int(counts.sum())
    return 0.0 if total == 0 else 1.0 - float((counts == 1).sum()) / total


@dataclass(frozen=True)
class Evidence:
    """What `decide_mode` weighs. incompatible: why the published tokenizer cannot serve this config
    (None when it can). The drift figures are those of an `assign` attempt: assigned_share is the
    share of active items that would carry origin 'assign' after it; expected_collision_rate is what
    a new item drawn like the map's items would meet (`expected_collision_rate`)."""

    has_map: bool
    incompatible: str | None = None
    overflow: int = 0
    assigned_share: float = 0.0
    new_collision_rate: float = 0.0
    expected_collision_rate: float = 0.0
    new_recon_error: float = 0.0
    fit_recon_error: float = 0.0
    n_new: int = 0


class ModeError(ValueError):
    """The requested mode cannot run on this map (assign with no map, an incompatible tokenizer or a full dedup digit)."""


def decide_mode(requested: str, evidence: Evidence, refit_new_share: float, drift_factor: float) -> tuple[str, str]:
    """('assign' | 'refit', reason). `requested` is tokenize.mode: auto, assign or refit."""
    e = evidence
    if requested == "refit":
        return "refit", "tokenize.mode = refit"
    blockers = []
    if not e.has_map:
        blockers.append("no published map")
    elif e.incompatible:
        blockers.append(f"the published tokenizer does not match the config ({e.incompatible})")
    elif e.overflow:
        blockers.append(f"{e.overflow} new item(s) would need a dedup digit beyond the published dedup codebook")
    if requested == "assign":
        if blockers:
            raise ModeError(f"tokenize.mode = assign cannot run: {blockers[0]}; use --mode refit or auto")
        return "assign", "tokenize.mode = assign"
    if blockers:
        return "refit", blockers[0]
    triggers = []
    if e.assigned_share > refit_new_share:
        triggers.append(f"items assigned since the last fit are {e.assigned_share:.1%} of the active map "
                        f"(> tokenize.refit_new_share {refit_new_share:.0%})")
    if e.n_new and e.new_collision_rate > drift_factor * e.expected_collision_rate and e.new_collision_rate > 0:
        triggers.append(f"new items collide at {e.new_collision_rate:.3f}, over {drift_factor}x the "
                        f"{e.expected_collision_rate:.3f} expected from the map")
    if e.n_new and e.new_recon_error > drift_factor * e.fit_recon_error:
        triggers.append(f"new items reconstruct with rel. error {e.new_recon_error:.3f}, over {drift_factor}x "
                        f"the fit's {e.fit_recon_error:.3f}")
    if triggers:
        return "refit", "; ".join(triggers)
    return "assign", (f"no drift trigger fired: {e.n_new} item(s) to place, assigned share "
                      f"{e.assigned_share:.1%}, new-item collision rate {e.new_collision_rate:.3f} "
                      f"(expected {e.expected_collision_rate:.3f})")


def vocabulary_kept(manifest: dict[str, dict], ancestor: str, descendant: str) -> tuple[bool, str]:
    """Whether a model trained on map `ancestor` still reads `descendant`'s SID tokens the same way:
    every map from the ancestor down is an assign (the same tokenizer) or an aligned refit (codes
    renamed to the published ones), and the level sizes never changed.

    manifest: map_version -> {"mode", "parent_map_version", "align" (bool), "level_sizes" (list)}.
    Returns (kept, reason)."""
    if ancestor == descendant:
        return True, "same map"
    chain, at = [], descendant
    while at != ancestor:
        row = manifest.get(at)
        if row is None or row.get("parent_map_version") is None:
            return False, f"map {ancestor} is not an ancestor of map {descendant}"
        chain.append(at)
        at = row["parent_map_version"]
        if len(chain) > len(manifest):
            return False, "the map lineage has a cycle"
    for version in chain:
        row, parent = manifest[version], manifest[manifest[version]["parent_map_version"]]
        if list(row["level_sizes"]) != list(parent["level_sizes"]):
            return False, f"map {version} changed the SID level sizes"
        if row["mode"] == "refit" and not row.get("align", False):
            return False, f"map {version} is a refit without alignment"
    return True, f"{len(chain)} map(s) since, each an assign or an aligned refit"

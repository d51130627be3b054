"""The recommenders of train.model on a toy task (item i is followed by item i+1), the shared training
loop (validation, best weights, early stop, exact resume) and the two ranking settings."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genrec_core.config import SasrecConfig, TrainConfig
from genrec_core.eval.ranking import evaluate
from genrec_core.model import recommenders as R
from genrec_core.model import sid_gpt, sid_item
from genrec_core.model.sid_vocab import SidVocab
from genrec_core.model.training import LoopConfig, fit

N = 30
LEVELS = (4, 4, 2)
CFG = TrainConfig(d_model=32, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2, d_kv=16, dropout=0.0,
                  max_history=5,
                  sasrec=SasrecConfig(d_model=32, d_ff=64, num_layers=1, num_heads=2, dropout=0.0, max_len=5))
LOOP = LoopConfig(batch_size=32, learning_rate=5e-3, weight_decay=0.0, warmup_steps=10, max_steps=150,
                  max_minutes=5.0, eval_every=50, patience=3)


def _tokens() -> np.ndarray:
    codes = np.array([[i // 8, (i // 2) % 4, i % 2] for i in range(N)])
    return SidVocab(LEVELS).codes_to_tokens(codes)


def _sequences(n_users: int = 60, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.integers(N) + np.arange(rng.integers(3, 8))) % N for _ in range(n_users)]


HISTORIES = [np.array([(i - 2) % N, (i - 1) % N, i]) for i in range(N)]
TARGETS = np.array([(i + 1) % N for i in range(N)])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(kind: str, seed: int = 0, **sizes) -> R.Recommender:
    spec = R.make_spec(dataclasses.replace(CFG, model=kind, **sizes), LEVELS, N, "m1")
    return R.build(spec, _tokens(), seed)


@pytest.fixture(scope="module", params=["sid_item", "sid_gpt", "sasrec", "tiger"])
def trained(request):
    rec = _model(request.param)
    loop = dataclasses.replace(LOOP, max_steps=400)
    state, _ = fit(rec.module, rec.loss, rec.examples(_sequences()), loop, seed=0, device="cpu")
    return rec, state


def test_every_trainable_model_learns_the_successor_task(trained):
    rec, state = trained
    report = evaluate(rec, HISTORIES, TARGETS, (1, 5), num_beams=10, batch_size=8, device="cpu")
    assert state.stopped_by == "max_steps"
    assert report["recall@1"] >= 0.8, (rec.kind, report)
    assert report["invalid_beam_share"] == 0.0


def test_excluded_ranking_never_lists_history_items(trained):
    rec, _ = trained
    ranking = rec.rank(HISTORIES, 10, num_beams=20, batch_size=8, device="cpu")
    for hist, row in zip(HISTORIES, ranking.excluded):
        assert not set(row.tolist()) & set(hist.tolist())
        assert len(set(row[row >= 0].tolist())) == (row >= 0).sum()


@pytest.mark.parametrize("kind,search", [("sid_gpt", sid_gpt), ("sid_item", sid_item)])
def test_beam_search_equals_exhaustive_scoring(kind, search):
    """Beams as wide as the catalogue must return every item in the order of its whole-SID log-probability,
    in a batch that mixes history lengths (left padding and positions)."""
    rec = _model(kind)
    fit(rec.module, rec.loss, rec.examples(_sequences()), dataclasses.replace(LOOP, max_steps=40), seed=0,
        device="cpu")
    histories = [np.array([3]), np.array([5, 6, 7, 8, 9, 10, 11]), np.array([20, 21])]
    beams, beam_scores = search.rank(rec.module, histories, rec.item_tokens, rec.trie, num_beams=N, batch_size=3,
                                     max_history=5, device="cpu")
    for hist, row, row_scores in zip(histories, beams, beam_scores):
        scores = search.exhaustive_scores(rec.module, hist, rec.item_tokens, 5)
        assert row.tolist() == np.argsort(-scores, kind="stable").tolist()
        np.testing.assert_allclose(row_scores * len(LEVELS), scores[row], rtol=1e-4, atol=1e-5)


def test_an_ensemble_trains_each_member_alone_and_decodes_their_mean():
    """members=2: two differently initialised nets; the loss is the mean of theirs, so each learns as it
    would alone; an item's score is the mean of the members' whole-SID log-probabilities, and wide beams
    list items in that order; the spec names the members (and a single net's spec does not)."""
    rec = _model("sid_item", members=2)
    assert rec.spec["sizes"]["members"] == 2 and "members" not in _model("sid_item").spec["sizes"]
    net = rec.module
    first, second = net.members
    assert not torch.equal(first.table, second.table)
    batch = rec.examples(_sequences())[:16]
    torch.testing.assert_close(rec.loss(batch, torch.device("cpu")),
                               (sid_item.loss(first, batch, rec.item_tokens, torch.device("cpu"))
                                + sid_item.loss(second, batch, rec.item_tokens, torch.device("cpu"))) / 2)
    before = [m.table.detach().clone() for m in net.members]
    fit(net, rec.loss, rec.examples(_sequences()), dataclasses.replace(LOOP, max_steps=40), seed=0, device="cpu")
    assert all(not torch.equal(b, m.table) for b, m in zip(before, net.members))
    histories = [np.array([3]), np.array([5, 6, 7, 8, 9, 10, 11])]
    beams, beam_scores = sid_item.rank(net, histories, rec.item_tokens, rec.trie, num_beams=N, batch_size=2,
                                       max_history=5, device="cpu")
    for hist, row, row_scores in zip(histories, beams, beam_scores):
        each = [sid_item.exhaustive_scores(m, hist, rec.item_tokens, 5) for m in net.members]
        scores = sid_item.exhaustive_scores(net, hist, rec.item_tokens, 5)
        np.testing.assert_allclose(scores, np.mean(each, axis=0), rtol=1e-5, atol=1e-5)
        assert row.tolist() == np.argsort(-scores, kind="stable").tolist()
        np.testing.assert_allclose(row_scores * len(LEVELS), scores[row], rtol=1e-4, atol=1e-5)
    again, _ = R.from_files(R.to_files(rec, [str(i) for i in range(N)], rec.item_tokens))
    a = rec.rank(HISTORIES, 5, num_beams=10, batch_size=8, device="cpu")
    b = again.rank(HISTORIES, 5, num_beams=10, batch_size=8, device="cpu")
    assert np.array_equal(a.kept, b.kept)
    with pytest.raises(R.SpecMismatch, match="sizes"):
        R.check_compatible(rec.spec, _model("sid_item").spec)


@settings(max_examples=8, deadline=None)
@given(st.lists(st.lists(st.integers(0, N - 1), min_size=1, max_size=8), min_size=2, max_size=6),
       st.integers(1, N + 4))
def test_sid_item_beams_do_not_depend_on_the_batch(histories, num_beams):
    """A history's beams are the same alone and in a left-padded batch with longer and shorter ones, and
    narrow beams are the head of the exhaustive order whenever that order has no near-ties."""
    rec = _untrained("sid_item")
    histories = [np.array(h) for h in histories]
    batch = sid_item.beam_items(rec.module, histories, rec.item_tokens, rec.trie, num_beams, 5, torch.device("cpu"))
    alone = sid_item.beam_items(rec.module, histories[:1], rec.item_tokens, rec.trie, num_beams, 5,
                                torch.device("cpu"))
    np.testing.assert_allclose(batch[1][:1], alone[1], rtol=1e-4, atol=1e-5)
    width = min(num_beams, N)
    assert (batch[0][:, width:] == -1).all()
    if num_beams >= N:
        exhaustive = np.sort(sid_item.exhaustive_scores(rec.module, histories[0], rec.item_tokens, 5))[::-1]
        np.testing.assert_allclose(batch[1][0, :N] * len(LEVELS), exhaustive, rtol=1e-4, atol=1e-5)


@settings(max_examples=8, deadline=None)
@given(st.lists(st.lists(st.integers(0, N - 1), min_size=1, max_size=8), min_size=1, max_size=6),
       st.integers(2, N + 4))
def test_cached_beam_search_equals_generate(histories, num_beams):
    """The tensor beam search with a copied prompt cache gives generate's beams and scores, including
    beams wider than the catalogue (padded with -1). Items of equal score may come in either order."""
    rec = _untrained("sid_gpt")
    histories = [np.array(h) for h in histories]
    fast = sid_gpt.beam_items(rec.module, histories, rec.item_tokens, rec.trie, num_beams, 5, torch.device("cpu"))
    ref = sid_gpt.generate_beam_items(rec.module, histories, rec.item_tokens, rec.trie, min(num_beams, N), 5,
                                      torch.device("cpu"))
    width = min(num_beams, N)
    np.testing.assert_allclose(fast[1][:, :width], ref[1], rtol=1e-4, atol=1e-5)
    for items, scores, ref_items in zip(fast[0], fast[1], ref[0]):
        rounded = np.round(-scores[:width], 4).tolist()
        assert sorted(zip(rounded, items[:width].tolist())) == sorted(zip(rounded, ref_items.tolist()))
    assert (fast[0][:, width:] == -1).all()


_UNTRAINED: dict = {}


def _untrained(kind: str):
    """One randomly initialised model of `kind` (random weights make ties rare; training is not what is tested)."""
    if kind not in _UNTRAINED:
        _UNTRAINED[kind] = _model(kind, seed=5)
        _UNTRAINED[kind].module.eval()
    return _UNTRAINED[kind]


def test_sasrec_scores_do_not_depend_on_padding():
    rec = _model("sasrec")
    alone = rec.rank([HISTORIES[4][:1]], 5, num_beams=5, batch_size=1, device="cpu").kept
    batched = rec.rank([HISTORIES[4][:1]] + HISTORIES[:3], 5, num_beams=5, batch_size=4, device="cpu").kept
    assert alone[0].tolist() == batched[0].tolist()


def test_popularity_ranks_by_count_and_can_rank_history_out():
    rec = _model("popularity")
    rec.fit_counts([np.array([3, 3, 3, 7, 7, 1])])
    ranking = rec.rank([np.array([3]), np.array([0])], 3, num_beams=3, batch_size=8, device="cpu")
    assert ranking.kept.tolist() == [[3, 7, 1], [3, 7, 1]]
    assert ranking.excluded.tolist() == [[7, 1, 0], [3, 7, 1]]


def _validator(rec):
    return lambda: evaluate(rec, HISTORIES, TARGETS, (5, 10), num_beams=10, batch_size=16, device="cpu")


def test_resume_continues_exactly_where_the_killed_run_stopped():
    """40 steps straight equal 20 steps, a checkpoint, a fresh process's model and 20 more steps."""
    loop = dataclasses.replace(LOOP, max_steps=40, eval_every=10)
    straight = _model("sasrec")
    cfg_drop = dataclasses.replace(CFG, sasrec=dataclasses.replace(CFG.sasrec, dropout=0.2))
    for rec in (straight,):
        rec.module = R.build(R.make_spec(dataclasses.replace(cfg_drop, model="sasrec"), LEVELS, N, "m1"),
                             _tokens(), 0).module
    state_a, _ = fit(straight.module, straight.loss, straight.examples(_sequences()), loop, seed=3, device="cpu",
                     validate=_validator(straight))
    snapshots = []
    first = R.build(R.make_spec(dataclasses.replace(cfg_drop, model="sasrec"), LEVELS, N, "m1"), _tokens(), 0)
    fit(first.module, first.loss, first.examples(_sequences()), dataclasses.replace(loop, max_steps=20), seed=3,
        device="cpu", validate=_validator(first), checkpoint=snapshots.append)
    mid = [s for s in snapshots if s.state.step == 20 and not s.state.stopped_by][0]
    second = R.build(R.make_spec(dataclasses.replace(cfg_drop, model="sasrec"), LEVELS, N, "m1"), _tokens(), 7)
    state_b, _ = fit(second.module, second.loss, second.examples(_sequences()), loop, seed=3, device="cpu",
                     validate=_validator(second), resume=mid)
    assert state_b.step == state_a.step == 40 and state_b.best_step == state_a.best_step
    for k, v in straight.module.state_dict().items():
        assert torch.equal(v, second.module.state_dict()[k]), k
    assert [p["step"] for p in state_b.curve] == [p["step"] for p in state_a.curve]


def test_early_stop_keeps_the_best_validated_weights():
    rec = _model("sasrec")
    calls = iter([0.5, 0.7, 0.6, 0.6, 0.6, 0.9])
    loop = dataclasses.replace(LOOP, max_steps=1000, eval_every=5, patience=3)
    seen = {}

    def validate():
        value = next(calls)
        seen[value] = {k: v.clone() for k, v in rec.module.state_dict().items()}
        return {"recall@10": value}

    state, best = fit(rec.module, rec.loss, rec.examples(_sequences()), loop, seed=0, device="cpu", validate=validate)
    assert state.stopped_by == "early_stop" and state.step == 25 and state.best_step == 10
    assert all(torch.equal(best[k], seen[0.7][k]) for k in best)
    assert all(torch.equal(rec.module.state_dict()[k], seen[0.7][k]) for k in best)


def test_a_plateau_cuts_the_learning_rate_from_the_best_weights():
    """Two validations without a gain: back to the best weights, half the learning rate; a gain resets
    the count; patience still stops."""
    rec = _model("sasrec")
    calls = iter([0.5, 0.7, 0.6, 0.6, 0.8, 0.6, 0.6, 0.6, 0.6, 0.6])
    loop = dataclasses.replace(LOOP, max_steps=1000, warmup_steps=1, eval_every=5, patience=5, plateau_evals=2,
                               plateau_decay=0.5)
    seen = {}

    def validate():
        value = next(calls)
        seen[len(seen)] = {k: v.clone() for k, v in rec.module.state_dict().items()}
        return {"recall@10": value}

    state, _ = fit(rec.module, rec.loss, rec.examples(_sequences()), loop, seed=0, device="cpu", validate=validate)
    lrs = [p["lr"] for p in state.curve]
    base = LOOP.learning_rate
    assert state.stopped_by == "early_stop" and state.best_step == 25
    np.testing.assert_allclose(lrs, [base] * 4 + [base / 2] * 3 + [base / 4] * 2 + [base / 8])
    assert state.lr_scale == 0.125
    # the step after the cut starts from the best (step 10) weights: validation 5 (step 25) trained
    # 5 steps from them, so it differs from validation 4 (step 20)
    assert any(not torch.equal(seen[4][k], seen[3][k]) for k in seen[4])


def test_ema_validates_and_keeps_the_moving_average_while_training_goes_on_from_the_live_weights():
    """Validation sees torch's moving average of the weights, checked against a plain loop over the
    weights after every step of the same run without it; the steps themselves are unchanged, and the
    kept best weights are the average."""
    loop = dataclasses.replace(LOOP, max_steps=20, eval_every=10, patience=10)
    params = lambda rec: {k: v.detach().clone() for k, v in rec.module.named_parameters()}
    plain, trail = _model("sasrec"), []
    fit(plain.module, plain.loss, plain.examples(_sequences()), loop, seed=0, device="cpu",
        progress=lambda state, loss: trail.append(params(plain)))
    rec, live, seen = _model("sasrec"), [], []

    def validate():
        seen.append(params(rec))
        return {"recall@10": float(len(seen))}  # every validation is a new best

    state, best = fit(rec.module, rec.loss, rec.examples(_sequences()), dataclasses.replace(loop, ema_decay=0.9),
                      seed=0, device="cpu", validate=validate, progress=lambda state, loss: live.append(params(rec)))
    assert state.step == 20 and len(seen) == 2
    for a, b in zip(trail, live):
        assert all(torch.equal(a[k], b[k]) for k in a)
    average = dict(trail[0])
    for step, weights in enumerate(trail[1:], start=2):
        decay = min(0.9, step / (9 + step))  # the early cap (1 + n) / (10 + n), n = step - 1 updates so far
        average = {k: decay * average[k] + (1 - decay) * weights[k] for k in average}
        if step % 10 == 0:
            for k in average:
                torch.testing.assert_close(seen[step // 10 - 1][k], average[k], rtol=1e-5, atol=1e-6)
    assert not all(torch.equal(seen[-1][k], trail[-1][k]) for k in average)
    assert all(torch.equal(best[k], seen[-1][k]) for k in seen[-1])


def test_wall_clock_budget_stops_training():
    rec = _model("sasrec")
    ticks = iter(range(0, 10_000, 30))  # 30 s a step
    state, _ = fit(rec.module, rec.loss, rec.examples(_sequences()),
                   dataclasses.replace(LOOP, max_minutes=2.0), seed=0, device="cpu", clock=lambda: next(ticks))
    assert state.stopped_by == "max_minutes" and 1 <= state.step <= 4


def test_weights_from_another_map_or_shape_are_refused():
    spec = R.make_spec(dataclasses.replace(CFG, model="sid_gpt"), LEVELS, N, "m1")
    R.check_compatible(spec, dict(spec))
    with pytest.raises(R.SpecMismatch, match="map_version: saved 'm1', this run 'm2'"):
        R.check_compatible(spec, {**spec, "map_version": "m2"})
    with pytest.raises(R.SpecMismatch, match="sizes"):
        R.check_compatible(spec, R.make_spec(dataclasses.replace(CFG, model="sid_gpt", d_model=64), LEVELS, N, "m1"))
    R.check_compatible(spec, {**spec, "map_version": "m2"}, same_map=False)


def test_saved_weights_rebuild_the_same_recommender(trained):
    rec, _ = trained
    again = R.build(rec.spec, _tokens(), seed=99)
    again.load_weights(rec.weights())
    a = rec.rank(HISTORIES, 5, num_beams=10, batch_size=8, device="cpu")
    b = again.rank(HISTORIES, 5, num_beams=10, batch_size=8, device="cpu")
    assert np.array_equal(a.kept, b.kept) and np.array_equal(a.excluded, b.excluded)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(-1, 12), min_size=0, max_size=15), min_size=1, max_size=5),
       st.integers(1, 6), st.data())
def test_select_keeps_order_and_drops_only_history(rows, k, data):
    width = max(len(r) for r in rows) or 1
    cands = np.full((len(rows), width), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        cands[i, :len(r)] = r
    scores = -np.arange(cands.size, dtype=np.float32).reshape(cands.shape)
    hists = [np.array(data.draw(st.lists(st.integers(0, 12), max_size=4)), dtype=np.int64) for _ in rows]
    items, got_scores = R.select(cands, scores, k, hists)
    for u, (row, hist, got) in enumerate(zip(cands, hists, items)):
        want, seen = [], set(hist.tolist())
        for j, i in enumerate(row.tolist()):
            if i >= 0 and i not in seen and len(want) < k:
                want.append(j)
                seen.add(i)
        assert got.tolist() == row[want].tolist() + [-1] * (k - len(want))
        assert got_scores[u, :len(want)].tolist() == scores[u, want].tolist()

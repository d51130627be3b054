"""`genrec run` end to end on the tiny profile, in fresh processes, then `genrec sql` and a rerun."""
from __future__ import annotations

import csv
import io
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e
TABLES = ("items", "interactions_clean", "interactions_quarantine", "ingest_audit", "user_sequences",
          "item_embeddings", "item_sid_staged", "item_sid", "sid_map_versions", "recommendations")


def genrec(home, *args, timeout=900) -> str:
    env = {**os.environ, "GENREC_HOME": str(home), "AIRFLOW_HOME": str(home / "airflow"), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "jobs.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"genrec {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout


def table_counts(home) -> dict[str, int]:
    union = " UNION ALL ".join(f"SELECT '{t}' AS t, count(*) AS n FROM genrec.{t}" for t in TABLES)
    rows = list(csv.reader(io.StringIO(genrec(home, "sql", union, "--output", "csv"))))
    assert rows[0] == ["t", "n"]
    return {t: int(n) for t, n in rows[1:]}


def sids(home) -> str:
    return genrec(home, "sql", "SELECT item_id, sid FROM genrec.item_sid ORDER BY item_id", "--limit", "100000",
                  "--output", "csv")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def first_run(home):
    return genrec(home, "run", "--profile", "tiny")


def test_run_prints_summary(first_run):
    for needle in ("Delta tables", "SID quality", "recall@10", "ndcg@10", "Stage wall time", "genrec sql"):
        assert needle in first_run


def test_sql_in_new_process_and_history(first_run, home):
    counts = table_counts(home)
    assert set(counts) == set(TABLES)
    assert counts["item_sid"] == counts["items"] > 0
    history = genrec(home, "sql", "DESCRIBE HISTORY genrec.item_sid")
    assert "MERGE" in history or "WRITE" in history
    assert "item_id" in genrec(home, "sql", "SELECT * FROM genrec.item_sid VERSION AS OF 0 LIMIT 5")


def test_models_registered(first_run, home):
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")
    c = MlflowClient()
    names = {m.name for m in c.search_registered_models()}
    assert {"genrec-tokenizer", "genrec-recommender-sid-item"} <= names
    rec = c.search_model_versions("name='genrec-recommender-sid-item'")[0]
    assert rec.tags["item_sid_version"].isdigit() and rec.tags["data_version"]
    assert c.get_model_version_by_alias("genrec-recommender-sid-item", "champion").version == rec.version
    assert c.get_model_version_by_alias("genrec-tokenizer", "champion")
    artifacts = {a.path for a in c.list_artifacts(rec.run_id)}
    assert "learning_curve.png" in artifacts
    assert [m.step for m in c.get_metric_history(rec.run_id, "valid_recall_at_10")]  # a curve, step-indexed


LOAD_WITH_MLFLOW_ONLY = """
import json, sys
import mlflow
import numpy as np
mlflow.set_tracking_uri(sys.argv[1])
dim, history = int(sys.argv[2]), json.loads(sys.argv[3])
codes = mlflow.pyfunc.load_model("models:/genrec-tokenizer@champion").predict(
    np.random.default_rng(0).normal(size=(4, dim)).astype("float32"))
import pandas as pd
top = mlflow.pyfunc.load_model("models:/genrec-recommender-sid-item@champion").predict(
    pd.DataFrame({"history": [history]}), params={"k": 5})["items"].tolist()
print(json.dumps({"codes": np.asarray(codes).tolist(), "top": top}))
"""


def test_registered_models_load_with_mlflow_alone(first_run, home):
    """A fresh process with no genrec import at the call site loads both champions through MLflow."""
    import json

    dim = int(list(csv.reader(io.StringIO(genrec(home, "sql", "SELECT max(dim) FROM genrec.item_embeddings",
                                                 "--output", "csv"))))[1][0])
    raw = list(csv.reader(io.StringIO(genrec(home, "sql", "SELECT to_json(item_ids) FROM genrec.user_sequences "
                                             "WHERE split = 'test' ORDER BY user_id LIMIT 1", "--output", "csv"))))
    history = json.loads(raw[1][0])
    proc = subprocess.run([sys.executable, "-c", LOAD_WITH_MLFLOW_ONLY, f"sqlite:///{home / 'mlruns' / 'mlflow.db'}",
                           str(dim), json.dumps(history)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert np_shape(out["codes"])[0] == 4 and len(out["top"]) == 1 and len(out["top"][0]) == 5
    catalogue = {r[0] for r in csv.reader(io.StringIO(genrec(home, "sql", "SELECT item_id FROM genrec.item_sid",
                                                             "--limit", "100000", "--output", "csv")))}
    assert set(out["top"][0]) <= catalogue


def np_shape(rows) -> tuple[int, int]:
    return len(rows), len(rows[0])


def test_baselines_and_a_challenger(first_run, home):
    """popularity and sasrec train in the same harness as their own models; a model that does not beat
    the champion by train.promote_margin becomes the challenger, and `genrec models` lists them all."""
    for model in ("popularity", "sasrec"):
        out = genrec(home, "run", "--profile", "tiny", "--stages", "train", "--model", model)
        assert f"genrec-recommender-{model}" in out and "recall@10.excl" in out
    out = genrec(home, "run", "--profile", "tiny", "--stages", "train", "--set", "train.max_steps=3",
                 "--set", "train.promote_margin=1.0")
    assert "is the challenger" in out and "does not beat champion" in out
    assert "warm start from genrec-recommender-sid-item v1 (the champion): same map" in out
    listing = genrec(home, "models")
    for name in ("genrec-tokenizer", "genrec-recommender-sid-item", "genrec-recommender-popularity",
                 "genrec-recommender-sasrec", "champion", "challenger"):
        assert name in listing


def one_row(home, query: str) -> list[str]:
    return list(csv.reader(io.StringIO(genrec(home, "sql", query, "--output", "csv"))))[1]


def test_recommendations_table_contract(first_run, home):
    """One partition per as_of_date with k ranked active items for every user with a test split; the
    README's Spark SQL example runs; a rerun for the same date replaces exactly that partition."""
    from schemas.tables import RECOMMENDATIONS

    # Each `genrec sql` starts Spark (about 20 s), so the checks share as few queries as they can.
    before = genrec(home, "sql", "SELECT * FROM genrec.recommendations ORDER BY user_id, rank", "--limit", "100000",
                    "--output", "csv")
    table = list(csv.reader(io.StringIO(before)))
    assert table[0] == RECOMMENDATIONS.column_names
    day = max(row[table[0].index("as_of_date")] for row in table[1:])
    users, rows, dupes, inactive, bad_rank, test_users = map(int, one_row(home, """
        SELECT count(DISTINCT r.user_id), count(*),
               count(*) - count(DISTINCT r.user_id, r.rank),
               sum(CASE WHEN s.status = 'active' AND s.sid = r.sid THEN 0 ELSE 1 END),
               sum(CASE WHEN r.rank BETWEEN 1 AND 10 THEN 0 ELSE 1 END),
               (SELECT count(DISTINCT user_id) FROM genrec.user_sequences WHERE split = 'test')
        FROM genrec.recommendations r LEFT JOIN genrec.item_sid s ON r.item_id = s.item_id"""))
    assert users == test_users > 0 and rows <= 10 * users and dupes == inactive == bad_rank == 0
    example = genrec(home, "sql", README_RECOMMENDATIONS_SQL)
    assert "item_id" in example
    genrec(home, "recommend", "--profile", "tiny", "--logical-date", day)
    genrec(home, "recommend", "--profile", "tiny", "--logical-date", "2031-01-01")
    per_day = dict(csv.reader(io.StringIO(genrec(home, "sql", "SELECT as_of_date, count(*) FROM "
                                                 "genrec.recommendations GROUP BY 1", "--output", "csv"))))
    assert per_day[day] == per_day["2031-01-01"] == str(rows)
    again = genrec(home, "sql", f"SELECT * FROM genrec.recommendations WHERE as_of_date = '{day}' "
                   "ORDER BY user_id, rank", "--limit", "100000", "--output", "csv")
    assert again == before


README_RECOMMENDATIONS_SQL = """
SELECT r.user_id, r.rank, r.item_id, r.sid, i.title
FROM genrec.recommendations r JOIN genrec.items i USING (item_id)
WHERE r.as_of_date = (SELECT max(as_of_date) FROM genrec.recommendations)
ORDER BY r.user_id, r.rank LIMIT 20"""


def test_a_killed_training_resumes_from_its_checkpoint(first_run, home):
    """kill -9 mid-training, then the same command again: it resumes from the last checkpoint, finishes,
    registers, and removes the checkpoint."""
    import json
    import time

    args = ["run", "--profile", "tiny", "--stages", "train", "--set", "train.max_steps=200", "--set",
            "train.eval_every=10", "--set", "train.patience=1000", "--set", "train.warm_start=never",
            "--set", "train.promote_margin=1.0"]
    env = {**os.environ, "GENREC_HOME": str(home), "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "jobs.cli", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline, step = time.monotonic() + 600, 0
    while time.monotonic() < deadline and proc.poll() is None and step < 20:
        for state in (home / "checkpoints").glob("*/state.json"):
            try:
                step = json.loads(state.read_text())["state"]["step"]
            except (OSError, ValueError):
                pass
        time.sleep(0.5)
    proc.kill()
    proc.wait()
    assert 20 <= step < 200, f"no mid-training checkpoint seen (last step {step})"
    out = genrec(home, *args)
    assert "resuming sid_item from step" in out
    resumed = int(out.split("resuming sid_item from step ")[1].split()[0])
    assert resumed >= 20 and not list((home / "checkpoints").glob("*/state.json"))


def test_second_run_changes_nothing(first_run, home):
    counts, before = table_counts(home), sids(home)
    second = genrec(home, "run", "--profile", "tiny")
    assert "reused" in second  # the recommender for this exact map and data is not retrained
    assert table_counts(home) == counts
    assert sids(home) == before


def test_bad_config_fails_fast(home):
    env = {**os.environ, "GENREC_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "jobs.cli", "run", "--set", "train.no_such_key=1"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown key" in proc.stderr


def test_gaoq_with_rrs_publishes_unique_sids_without_an_extra_token(tmp_path_factory):
    import json

    home = tmp_path_factory.mktemp("e2e-gaoq")
    out = genrec(home, "run", "--profile", "tiny", "--tokenizer", "gaoq", "--collisions", "rrs")
    assert "recall@10" in out
    rows = list(csv.reader(io.StringIO(genrec(
        home, "sql", "SELECT count(*), count(DISTINCT sid), max(size(codes)), min(size(codes)) FROM genrec.item_sid",
        "--output", "csv"))))
    n, distinct, longest, shortest = map(int, rows[1])
    assert n == distinct > 0 and longest == shortest == 3  # 3 semantic levels, no dedup digit
    manifest = list(csv.reader(io.StringIO(genrec(home, "sql", "SELECT config FROM genrec.sid_map_versions",
                                                  "--output", "csv"))))
    config = json.loads(manifest[1][0])
    assert (config["quantizer"], config["collisions"]) == ("gaoq", "rrs")


def _write_p5(folder, lines, items_src, keep) -> None:
    import json

    folder.mkdir(exist_ok=True)
    kept = [" ".join([u, *[i for i in rest if i in keep]]) for u, *rest in (line.split() for line in lines)]
    (folder / "sequential_data.txt").write_text("\n".join(k for k in kept if len(k.split()) > 1) + "\n")
    with items_src.open() as src, (folder / "items.jsonl").open("w") as out:
        out.writelines(line for line in src if str(json.loads(line)["item_id"]) in keep)


@pytest.mark.realdata
def test_readme_two_nights_on_one_folder(tmp_path, beauty_dir):
    """The README's night-after-night commands on a 300-user Beauty slice: night 1 fits in auto mode;
    DIR then gains 5% more items (same path, same home) and night 2 assigns; sid_changes shows no
    change of an old item."""
    lines = (beauty_dir / "sequential_data.txt").read_text().splitlines()[:300]
    wanted = sorted({i for line in lines for i in line.split()[1:]}, key=int)
    late = set(wanted[-len(wanted) // 20:])
    data, home = tmp_path / "DIR", tmp_path / "home"
    home.mkdir()
    common = ("--profile", "tiny", "--set", "clean.kcore=0", "--stages", "ingest,sequences,embed,tokenize,gate,publish")
    _write_p5(data, lines, beauty_dir / "items.jsonl", set(wanted) - late)
    out = genrec(home, "run", "--dataset", f"p5:{data}", "--mode", "auto", "--logical-date", "2026-01-01", *common)
    assert "tokenize mode: refit (no published map)" in out
    night1 = dict(csv.reader(io.StringIO(sids(home))))
    _write_p5(data, lines, beauty_dir / "items.jsonl", set(wanted))
    out = genrec(home, "run", "--dataset", f"p5:{data}", "--mode", "assign", "--logical-date", "2026-01-02", *common)
    assert "tokenize mode: assign" in out
    night2 = dict(csv.reader(io.StringIO(sids(home))))
    assert len(night2) == len(night1) + len(late) and {k: night2[k] for k in night1} == night1
    counts = genrec(home, "sql", "SELECT count(*) AS n FROM genrec.sid_changes WHERE change <> 'insert'",
                    "--output", "csv")
    assert counts.split() == ["n", "0"]
    manifest = genrec(home, "sql", "SELECT mode, n_new, n_moved, churn_full FROM genrec.sid_map_versions "
                      "ORDER BY item_sid_version", "--output", "csv")
    assert manifest.split() == ["mode,n_new,n_moved,churn_full", f"refit,{len(night1) - 1},0,0.0",  # less the csv header
                                f"assign,{len(late)},0,0.0"]
    # The README's other queries of the map's history.
    genrec(home, "sql", "SELECT map_version, mode, reason, n_new, n_retired, n_moved, churn_full, item_sid_version "
           "FROM genrec.sid_map_versions ORDER BY item_sid_version")
    changed = genrec(home, "sql", "SELECT item_id, old_sid, new_sid, change, map_version FROM genrec.sid_changes "
                     "WHERE change IN ('update', 'retire', 'return')", "--output", "csv")
    assert changed.split() == ["item_id,old_sid,new_sid,change,map_version"]
    current = genrec(home, "sql", "SELECT count(*) AS n FROM genrec.item_sid_current", "--output", "csv")
    assert current.split() == ["n", str(len(night2) - 1)]
    first = genrec(home, "sql", "SELECT item_sid_version FROM genrec.sid_map_versions WHERE mode = 'refit'",
                   "--output", "csv").split()[1]
    as_of = genrec(home, "sql", f"SELECT count(*) AS n FROM genrec.item_sid VERSION AS OF {first} "
                   "WHERE status = 'active'", "--output", "csv")
    assert as_of.split() == ["n", str(len(night1) - 1)]

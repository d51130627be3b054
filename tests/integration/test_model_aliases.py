"""Champion and challenger aliases on a real MLflow registry (sqlite store, no Spark)."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture()
def registry(tmp_path):
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                     registry_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    c.create_registered_model("m")
    for _ in range(2):
        c.create_model_version("m", source=(tmp_path / "weights").as_uri())
    return c


def aliases(c, version: str) -> list[str]:
    return sorted(c.get_model_version("m", version).aliases)


def test_a_challenger_that_is_crowned_loses_its_challenger_alias(registry):
    from jobs.lake.mlflow_models import CHALLENGER, crown

    crown(registry, "m", "1")
    registry.set_registered_model_alias("m", CHALLENGER, "2")
    assert aliases(registry, "2") == ["challenger"]
    crown(registry, "m", "2")
    assert aliases(registry, "2") == ["champion"]
    assert aliases(registry, "1") == []


def test_crowning_leaves_another_versions_challenger_alias(registry):
    from jobs.lake.mlflow_models import CHALLENGER, crown

    registry.set_registered_model_alias("m", CHALLENGER, "2")
    crown(registry, "m", "1")
    assert aliases(registry, "1") == ["champion"]
    assert aliases(registry, "2") == ["challenger"]

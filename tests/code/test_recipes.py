"""recipes/*.yaml (issue 19): every recipe is a `--config` file that `hqgnn` loads and validates,
costs the bytes per item its name says, is a row of the README's "Pick your budget" table, and
the `hqgnn/train` deployment trains the recommended one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from flows.cli import load_pipeline_config
from flows.config import PipelineConfig
from hqgnn.bits import is_float
from hqgnn.codes import code_bytes

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
NAME = re.compile(r"^(?P<bytes>\d+)B-(?:(?P<bits>\d+)bit|float32)-d(?P<dim>\d+)(?P<float_users>-float-users)?$")
RECOMMENDED = "recipes/12B-1bit-d64.yaml"


def test_there_are_recipes_for_several_budgets() -> None:
    assert len(RECIPES) >= 4, RECIPES
    assert (ROOT / RECOMMENDED).is_file()


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_recipe_loads_and_costs_what_its_name_says(path: Path) -> None:
    cfg = load_pipeline_config(path)  # raises HqgnnError naming the file and key on any bad key or value
    m = NAME.match(path.stem)
    assert m, f"{path.name}: name it <bytes>B-<bits>bit-d<dim>[-float-users].yaml (or <bytes>B-float32-d<dim>.yaml)"
    bits = int(m["bits"] or 32)
    assert (cfg.train.bits, cfg.train.dim) == (bits, int(m["dim"]))
    assert cfg.train.float_users == bool(m["float_users"])  # -float-users: float32 users, the bytes per item are the items' codes
    shipped = code_bytes(bits, cfg.train.dim) + (0 if is_float(bits) else 4)  # packed code + float32 scale
    assert shipped == int(m["bytes"])
    assert cfg.train.eval_every < cfg.train.epochs  # validation picks the epoch kept (and stops the run early unless patience is null)
    assert set(yaml.safe_load(path.read_text())) == {"train"}  # a recipe sets training only: data stays the user's


def test_readme_budget_table_lists_every_recipe() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Pick your budget"):]
    section = section[:section.index("\n## ")]
    listed = set(re.findall(r"`(recipes/[^`]+\.yaml)`", section))
    assert listed == {f"recipes/{p.name}" for p in RECIPES}
    assert RECOMMENDED in re.findall(r"\*\*`(recipes/[^`]+\.yaml)`\*\*", section)


def test_train_deployment_trains_the_recommended_recipe() -> None:
    deployments = {d["name"]: d["parameters"] for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    keys = yaml.safe_load((ROOT / RECOMMENDED).read_text())["train"]
    recipe = load_pipeline_config(ROOT / RECOMMENDED).train
    deployed = PipelineConfig(train=deployments["train"]["train"]).train
    assert {k: getattr(deployed, k) for k in keys} == {k: getattr(recipe, k) for k in keys}

import io
import json
import random
import tarfile

import pytest

from translora.config import TaskSpec
from translora.data import boolean_expressions as be
from translora.data import load_task
from translora.data.bigbench import SDIST
from translora.errors import DataError


def test_evaluator_matches_python_semantics():
    rng = random.Random(1)
    for _ in range(500):
        tokens = be.random_expression(rng, rng.choice((1, 3, 5, 7, 9)))
        assert be.evaluate(tokens) == eval(" ".join(tokens))  # test oracle only; the library never evals


def test_generated_examples_follow_the_grammar():
    examples = be.generate(300, seed=3)
    assert len({e.input for e in examples}) == 300
    for e in examples:
        tokens = e.input.split()
        assert tokens[-1] == "is" and e.target in ("True", "False")
        assert set(tokens[:-1]) <= {"True", "False", "and", "or", "not", "(", ")"}
        assert tokens.count("(") == tokens.count(")")
    assert 0.3 < sum(e.target == "True" for e in examples) / 300 < 0.7
    assert be.generate(20, seed=3) == examples[:20]


def test_split_is_disjoint_sized_and_deterministic(tmp_path):
    spec = TaskSpec(n_train=40, n_test=20)
    a, b = load_task(spec, 0, tmp_path), load_task(spec, 0, tmp_path)
    assert a == b and len(a.train) == 40 and len(a.test) == 20
    assert not {e.input for e in a.train} & {e.input for e in a.test}
    assert a.card.choices == ["True", "False"] and a.card.name == "boolean_expressions"


def test_jsonl_task_and_its_errors(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"input": f"q{i}", "target": "yes" if i % 2 else "no"}) + "\n"
                            for i in range(30)))
    data = load_task(TaskSpec(name=f"jsonl:{path}", n_train=20, n_test=10), 0, tmp_path)
    assert data.card.choices == ["no", "yes"] and data.card.name == "t"
    with pytest.raises(DataError, match="n_train \\+ n_test"):
        load_task(TaskSpec(name=f"jsonl:{path}", n_train=25, n_test=10), 0, tmp_path)
    path.write_text('{"input": "x"}\n')
    with pytest.raises(DataError, match="t.jsonl:1"):
        load_task(TaskSpec(name=f"jsonl:{path}", n_train=10, n_test=1), 0, tmp_path)
    with pytest.raises(DataError, match="unknown task"):
        load_task(TaskSpec(name="squad"), 0, tmp_path)


def _fake_sdist(home, task: str, examples: list[dict], prefix: str = ""):
    (home / "downloads").mkdir(parents=True)
    body = json.dumps({"description": "fake", "task_prefix": prefix, "examples": examples}).encode()
    with tarfile.open(home / "downloads" / SDIST, "w:gz") as tar:
        info = tarfile.TarInfo(f"bigbench-1.0.0/bigbench/benchmark_tasks/{task}/task.json")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))


def test_bigbench_reader_uses_target_scores(tmp_path):
    examples = [{"input": f"s{i}", "target_scores": {"plausible": i % 2, "implausible": 1 - i % 2}}
                for i in range(30)]
    _fake_sdist(tmp_path, "sports_understanding", examples, prefix="Is it plausible?")
    data = load_task(TaskSpec(name="bbh:sports_understanding", n_train=20, n_test=10), 0, tmp_path)
    assert data.card.choices == ["implausible", "plausible"]
    assert all(e.input.startswith("Is it plausible?\ns") for e in data.train)
    by_input = {e.input.split("\n")[1]: e.target for e in data.train + data.test}
    assert by_input["s1"] == "plausible" and by_input["s2"] == "implausible"


def test_bigbench_missing_sdist_says_run_setup(tmp_path):
    with pytest.raises(DataError, match="scripts/setup.sh"):
        load_task(TaskSpec(name="bbh:navigate"), 0, tmp_path)


@pytest.mark.real
def test_real_bigbench_task_from_the_sdist():
    from translora.models import translora_home

    data = load_task(TaskSpec(name="bbh:sports_understanding", n_train=200, n_test=100), 0, translora_home())
    assert data.card.choices == ["implausible", "plausible"]
    assert len(data.train) == 200 and all(e.target in data.card.choices for e in data.train)

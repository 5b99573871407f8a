"""The content-addressed store: keys, locks, run indexes, gc, model fingerprints."""

import hashlib
import json
import multiprocessing
import shutil
import time
from pathlib import Path

import pytest

from translora import models
from translora import store as store_module
from translora.config import ModelSpec, load_config
from translora.stage import Stage, execute
from translora.store import RunIndex, Store, code_version, stage_key


def _key() -> str:
    return stage_key("s", {"filter": {"n_keep": 3}}, {"data": "abc"}, {"base": {"fingerprint": "f"}})


def test_key_changes_with_config_inputs_and_models():
    base = _key()
    assert base == _key()
    assert stage_key("s", {"filter": {"n_keep": 4}}, {"data": "abc"}, {"base": {"fingerprint": "f"}}) != base
    assert stage_key("s", {"filter": {"n_keep": 3}}, {"data": "abd"}, {"base": {"fingerprint": "f"}}) != base
    assert stage_key("s", {"filter": {"n_keep": 3}}, {"data": "abc"}, {"base": {"fingerprint": "g"}}) != base


def test_an_edit_of_translora_code_invalidates(tmp_path):
    package = Path(store_module.__file__).parent
    copy = tmp_path / "translora"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_version.__wrapped__(copy)
    assert before == code_version.__wrapped__(package)
    with open(copy / "stages" / "transfer.py", "a") as fh:  # a module in a subpackage counts too
        fh.write("\n# an edit\n")
    assert code_version.__wrapped__(copy) != before


def test_a_code_or_library_version_change_changes_the_key(monkeypatch):
    base = _key()
    monkeypatch.setattr(store_module, "code_version", lambda: "edited")
    assert _key() != base
    monkeypatch.undo()
    from translora import artifacts

    real = artifacts.metadata.version
    monkeypatch.setattr(artifacts.metadata, "version", lambda name: "9.9.9" if name == "peft" else real(name))
    assert store_module.library_versions()["peft"] == "9.9.9" and _key() != base


def _slow_stage(ctx) -> dict:
    with open(ctx.config.task.name.split(":", 1)[1], "a") as fh:  # count the runs in a file
        fh.write("ran\n")
    time.sleep(1.5)
    (ctx.out / "result.txt").write_text("done")
    return {}


SLOW = Stage("slow", _slow_stage, ("task",), slot="slow")


def _run_slow(root: str, counter: str, out: multiprocessing.Queue) -> None:
    cfg = load_config("cpu", overrides=[f"task.name=jsonl:{counter}"])
    out.put(str(execute(SLOW, cfg, {}, {}, Store(root)).path))


def test_two_identical_runs_at_once_end_with_one_intact_output(tmp_path):
    counter = tmp_path / "runs.txt"
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_run_slow, args=(str(tmp_path / "store"), str(counter), results)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    paths = {results.get(timeout=5), results.get(timeout=5)}
    assert len(paths) == 1 and counter.read_text() == "ran\n"  # computed once, reused by the other
    assert (Path(paths.pop()) / "result.txt").read_text() == "done"
    assert list((tmp_path / "store" / "tmp").iterdir()) == []


def test_a_failed_stage_leaves_nothing_and_the_next_writer_sweeps_stale_temporaries(tmp_path):
    def boom(ctx):
        (ctx.out / "half").write_text("x")
        raise RuntimeError("killed")

    store = Store(tmp_path)
    cfg = load_config("cpu")
    with pytest.raises(RuntimeError):
        execute(Stage("boom", boom, (), slot="b"), cfg, {}, {}, store)
    assert list((tmp_path / "tmp").iterdir()) == []
    key = stage_key("ok", {}, {}, {})
    (tmp_path / "tmp" / f"{key}.deadbeef").mkdir()  # as a SIGKILLed writer would leave it
    out = execute(Stage("ok", lambda ctx: {}, (), slot="o"), cfg, {}, {}, store)
    assert out.key == key and list((tmp_path / "tmp").iterdir()) == []


def test_gc_frees_only_what_no_run_references(tmp_path):
    store = Store(tmp_path / "store")
    cfg = load_config("cpu")
    kept, dropped = (
        execute(Stage(n, lambda ctx: (ctx.out / "w").write_bytes(b"x" * 4096) and {}, (), slot=n), cfg, {}, {}, store)
        for n in ("kept", "dropped")
    )
    for run_dir, out in ((tmp_path / "a", kept), (tmp_path / "b", dropped)):
        RunIndex(run_dir).record("slot", out.path.parent.name, out.key, out.path)
        store.register_run(run_dir)
    assert store.runs() == [
        p.resolve()
        for p in sorted(
            (tmp_path / "a", tmp_path / "b"), key=lambda p: hashlib.sha256(str(p.resolve()).encode()).hexdigest()
        )
    ]
    shutil.rmtree(tmp_path / "b")
    assert store.gc(dry_run=True) == store.gc(dry_run=True) and dropped.path.exists()  # says, removes nothing
    removed, freed = store.gc()
    assert removed == 1 and freed >= 4096
    assert kept.path.exists() and not dropped.path.exists()
    assert (tmp_path / "a" / "slot" / "w").read_bytes() == b"x" * 4096


def test_run_index_is_readable_and_moves(tmp_path):
    store = Store(tmp_path / "store")
    out = execute(
        Stage("one", lambda ctx: (ctx.out / "f").write_text("1") and {}, (), slot="one"),
        load_config("cpu"),
        {},
        {},
        store,
    )
    RunIndex(tmp_path / "run").record("finetune/one", "one", out.key, out.path)
    index = json.loads((tmp_path / "run" / "index.json").read_text())
    assert index["slots"]["finetune/one"]["key"] == out.key
    shutil.move(tmp_path / "run", tmp_path / "moved")
    assert (RunIndex(tmp_path / "moved").slot("finetune/one") / "f").read_text() == "1"


def test_a_model_folder_is_read_once_per_set_of_files(tiny_models, monkeypatch, tmp_path):
    monkeypatch.setenv("TRANSLORA_HOME", str(tmp_path))
    folder = tmp_path / "model"
    shutil.copytree(tiny_models["llama"], folder)
    reads = []
    real = models.hash_path
    monkeypatch.setattr(models, "hash_path", lambda p: reads.append(p) or real(p))
    spec = ModelSpec(id=str(folder))
    first = models.fingerprint(spec)
    assert models.fingerprint(spec) == first and len(reads) == 1
    (folder / "config.json").write_text((folder / "config.json").read_text() + " ")
    assert models.fingerprint(spec) != first and len(reads) == 2  # a changed file is read again


def test_a_stage_keyed_on_one_field_ignores_the_rest_of_its_section(tiny_models):
    """The oracle reads filter.n_keep only: an ablation's filter.mode must not retrain it, and eval.oracle must not
    re-run the evaluations; the distillation reads label.targets and label.temperature, which its input does not
    show."""
    from tests.helpers import tiny_overrides
    from translora import stages
    from translora.config import load_config
    from translora.stage import key_material

    def material(stage, *overrides):
        cfg = load_config("cpu", overrides=[*tiny_overrides(tiny_models), *overrides])
        return key_material(stage, cfg, {"data": None}, {"base": cfg.target_model})[0]

    assert material(stages.ORACLE) == material(stages.ORACLE, "filter.mode=none")
    assert material(stages.ORACLE) != material(stages.ORACLE, "filter.n_keep=5")

    def evaluation(*overrides):
        cfg = load_config("cpu", overrides=[*tiny_overrides(tiny_models), *overrides])
        return key_material(stages.EVALUATE, cfg, {"data": None, "adapter": None}, {"model": cfg.target_model})[0]

    assert evaluation() == evaluation("eval.oracle=false")
    assert evaluation() != evaluation("eval.limit=7")

    def distillation(*overrides):  # hard and soft labels write the same labelled.jsonl: the key must tell them apart
        cfg = load_config("cpu", overrides=[*tiny_overrides(tiny_models), *overrides])
        inputs = {"bundle": None, "filtered": None, "labelled": None}
        return key_material(stages.DISTILL, cfg, inputs, {"base": cfg.target_model})[0]

    assert distillation("label.targets=hard") != distillation("label.targets=soft")
    assert distillation("label.temperature=0.25") != distillation()


def test_a_stage_reads_only_the_config_it_declares():
    """A read of an undeclared setting fails at once: the key would not cover it, so a cached output could be
    served for another value of it."""
    from translora.stage import ConfigView

    view = ConfigView(load_config("cpu"), ("filter.n_keep", "seed", "generation"))
    assert view.filter.n_keep == load_config("cpu").filter.n_keep and view.seed == 0
    assert view.generation.dtype == "bfloat16"
    with pytest.raises(AttributeError, match="config.filter.mode, which its Stage declaration does not name"):
        view.filter.mode
    with pytest.raises(AttributeError, match="config.task"):
        view.task


def test_negatives_do_not_depend_on_the_discriminators_training_settings():
    from translora import stages

    a = load_config("cpu")
    b = load_config("cpu", overrides=["discriminator.train.lr=0.5", "discriminator.adapter.r=4"])
    c = load_config("cpu", overrides=["discriminator.n_negatives=17"])
    sections = stages.NEGATIVES.sections
    assert a.section(*sections) == b.section(*sections) != c.section(*sections)


def test_a_run_folder_that_is_not_a_link_is_refused_without_a_trace(tmp_path):
    from translora.errors import ArtifactError

    run = RunIndex(tmp_path / "run")
    (run.root / "data").mkdir(parents=True)
    with pytest.raises(ArtifactError, match="is a real folder"):
        run.record("data", "prepare-data", "k", tmp_path)
    assert sorted(p.name for p in run.root.iterdir()) == [".index.lock", "data"]  # no index entry, no stray link


def test_hub_models_are_fingerprinted_by_the_commit_they_resolve_to(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from translora.errors import ModelNotFoundError

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="pin it with `revision: <commit sha>`"):
        models.fingerprint(ModelSpec(id="org/model"))
    pinned = models.fingerprint(ModelSpec(id="org/model", revision="a" * 40))
    assert pinned != models.fingerprint(ModelSpec(id="org/model", revision="b" * 40))
    refs = tmp_path / "models--org--model" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text("1" * 40)
    first = models.fingerprint(ModelSpec(id="org/model"))
    (refs / "main").write_text("2" * 40)  # the hub's main moved on: outputs made on the old weights are not reused
    assert models.fingerprint(ModelSpec(id="org/model")) != first


def _counted(counter: Path):
    """A stage that writes result.txt and counts its runs in `counter`."""

    def run(ctx) -> dict:
        with open(counter, "a") as fh:
            fh.write("ran\n")
        (ctx.out / "result.txt").write_text("intact")
        return {}

    return run


def test_a_damaged_entry_is_moved_aside_and_computed_again_on_reuse(tmp_path, caplog):
    """Issue 22: a run folder's slots are links into the store, so an edit through a `cp -r` copy of a run edits
    the entry every run shares. Reusing it must not serve it, nor fail every later run: the damaged entry goes to
    <store>/damaged/<stage>/ (kept as evidence) and the same key is computed again in place."""
    store, cfg, counter = Store(tmp_path / "store"), load_config("cpu"), tmp_path / "runs.txt"
    stage = Stage("counted", _counted(counter), (), slot="counted")
    first = execute(stage, cfg, {}, {}, store)
    RunIndex(tmp_path / "run").record("counted", "counted", first.key, first.path)
    shutil.copytree(tmp_path / "run", tmp_path / "copy", symlinks=True)  # what `cp -r` does: the links are copied
    (tmp_path / "copy" / "counted" / "result.txt").write_text("edited in the copy")
    assert "changed since: result.txt" in store.problem("counted", first.key)

    with caplog.at_level("WARNING", logger="translora.stage"):
        again = execute(stage, cfg, {}, {}, store)
    assert again.key == first.key and again.path == first.path and not again.cached
    assert counter.read_text() == "ran\nran\n"
    assert (again.path / "result.txt").read_text() == "intact" and store.problem("counted", again.key) is None
    assert (tmp_path / "run" / "counted" / "result.txt").read_text() == "intact"  # every run's link sees the repair
    [aside] = (tmp_path / "store" / "damaged" / "counted").iterdir()
    assert aside.name.startswith(first.key + "-") and (aside / "result.txt").read_text() == "edited in the copy"
    [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert str(first.path) in warning.getMessage() and str(aside) in warning.getMessage()
    assert execute(stage, cfg, {}, {}, store).cached and counter.read_text() == "ran\nran\n"  # intact: reused
    assert store.gc([tmp_path / "run"]) == (0, 0) and aside.exists()  # gc keeps the evidence


def test_an_entry_that_lost_its_manifest_is_computed_again(tmp_path):
    store, cfg = Store(tmp_path / "store"), load_config("cpu")
    stage = Stage("counted", _counted(tmp_path / "runs.txt"), (), slot="counted")
    first = execute(stage, cfg, {}, {}, store)
    (first.path / "manifest.json").unlink()
    again = execute(stage, cfg, {}, {}, store)
    assert not again.cached and store.problem("counted", again.key) is None
    assert len(list((tmp_path / "store" / "damaged" / "counted").iterdir())) == 1


def test_a_damaged_input_names_the_store_entry_and_the_repair(tmp_path):
    """A downstream stage given a damaged entry through a run folder's link: the error names the entry itself (not
    the link, whose deletion would change nothing) and `translora store verify --repair`."""
    from translora.errors import ArtifactError

    store, cfg = Store(tmp_path / "store"), load_config("cpu")
    up = execute(Stage("up", _counted(tmp_path / "runs.txt"), (), slot="up"), cfg, {}, {}, store)
    link = RunIndex(tmp_path / "run").record("up", "up", up.key, up.path)
    (link / "result.txt").write_text("edited")
    down = Stage("down", lambda ctx: {}, (), slot="down", inputs=("data",))
    with pytest.raises(ArtifactError, match="changed after it was written") as err:
        execute(down, cfg, {"data": link}, {}, store)
    message = str(err.value)
    assert f"a link to {up.path}" in message
    assert f"translora store verify --repair --store {store.root}" in message


def test_verify_finds_damaged_entries_and_repair_moves_only_those_aside(tmp_path):
    store, cfg = Store(tmp_path / "store"), load_config("cpu")
    intact, edited, emptied = (
        execute(Stage(n, _counted(tmp_path / "runs.txt"), (), slot=n), cfg, {}, {}, store)
        for n in ("intact", "edited", "emptied")
    )
    (edited.path / "result.txt").write_text("edited")
    (emptied.path / "manifest.json").unlink()
    assert store.verify() == store.verify(repair=False)
    found = {d.stage: d for d in store.verify()}
    assert set(found) == {"edited", "emptied"}
    assert found["edited"].key == edited.key and found["edited"].path == edited.path
    assert "changed since: result.txt" in found["edited"].problem and "no manifest.json" in found["emptied"].problem
    assert edited.path.exists() and found["edited"].moved_to is None  # without repair, nothing moves

    repaired = store.verify(repair=True)
    assert {d.stage for d in repaired} == {"edited", "emptied"}
    for d in repaired:
        assert not d.path.exists() and d.moved_to.parent == tmp_path / "store" / "damaged" / d.stage
    assert (repaired[0].moved_to / "result.txt").exists()
    assert store.verify() == [] and intact.path.exists() and store.problem("intact", intact.key) is None
    again = execute(Stage("edited", _counted(tmp_path / "runs.txt"), (), slot="edited"), cfg, {}, {}, store)
    assert again.path == edited.path and not again.cached and store.verify() == []


def test_the_store_verify_command_exits_1_on_damage_and_0_after_repair(tmp_path, monkeypatch, capsys):
    from flows.cli import main

    monkeypatch.setenv("TRANSLORA_STORE", str(tmp_path / "elsewhere"))  # --store must win; restored afterwards
    store = Store(tmp_path / "store")
    out = execute(Stage("s", _counted(tmp_path / "runs.txt"), (), slot="s"), load_config("cpu"), {}, {}, store)
    verify = ["store", "verify", "--store", str(tmp_path / "store")]
    assert main(verify) == 0
    assert "1 output checked, all intact" in capsys.readouterr().out

    (out.path / "result.txt").write_text("edited")
    assert main(verify) == 1
    printed = capsys.readouterr().out
    assert f"damaged: s {out.key} {out.path}: " in printed and "1 damaged" in printed and "--repair" in printed
    assert main(verify + ["--repair"]) == 0
    printed = capsys.readouterr().out
    assert f"moved to {tmp_path / 'store' / 'damaged' / 's'}" in printed and "moved aside" in printed
    assert main(verify) == 0 and not out.path.exists()
    assert main(["store", "verify", "--store", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err

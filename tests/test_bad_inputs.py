"""Bad inputs through the command line, as a user meets them: each case exits 2 with one line on stderr that starts
"error:" and names the fix, raised before any flow starts, and changes nothing already on disk (run directory,
store, bundle, task data, keys)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from flows import cli
from tests import fake_vllm
from tests.helpers import make_adapter, make_bundle, relist, tiny_overrides
from translora.artifacts import Manifest, write_json, write_manifest
from translora.data import boolean_expressions
from translora.signing import generate_ed25519_keypair, generate_hmac_key


@dataclass
class Env:
    tmp: Path
    models: dict[str, Path]
    adapter: Path
    dora: Path
    hmac: Path
    other_hmac: Path
    ed_private: Path
    ed_public: Path
    servers: list = field(default_factory=list)  # fake vLLM servers to shut down after the case

    @property
    def run(self) -> Path:
        return self.tmp / "run"

    def bundle(self, name: str = "bundle", **kw) -> Path:
        return make_bundle(self.tmp / name, self.adapter, self.models["llama"], **kw)

    def transfer(self, bundle: Path | None = None, *extra: str) -> list[str]:
        return [
            "transfer",
            "--bundle",
            str(bundle or self.bundle()),
            "--target",
            str(self.models["gemma3"]),
            "--run-dir",
            str(self.run),
            *_sets(tiny_overrides(self.models)),
            *extra,
        ]

    def finetune(self, *extra: str) -> list[str]:
        return ["finetune", "--run-dir", str(self.run), *_sets(tiny_overrides(self.models)), *extra]

    def task_file(self, text: str | bytes) -> str:
        path = self.tmp / "task.jsonl"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return f"task.name=jsonl:{path}"

    def file(self, name: str, text: str = "", encoding: str = "utf-8") -> Path:
        (self.tmp / name).write_bytes(text.encode(encoding))
        return self.tmp / name

    def folder(self, name: str) -> Path:
        (self.tmp / name).mkdir()
        return self.tmp / name


def _sets(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def _rows(n: int) -> str:
    return "".join(
        json.dumps({"input": e.input, "target": e.target}) + "\n" for e in boolean_expressions.generate(n, seed=1)
    )


def _edit(path: Path, change: Callable[[bytes], bytes]) -> None:
    path.write_bytes(change(path.read_bytes()))


def _tampered(e: Env, change: Callable[[Path], None], relisted: bool = False) -> Path:
    b = e.bundle()
    change(b)
    if relisted:
        relist(b)
    return b


def _signed_by_hmac(e: Env, key: Path) -> Path:
    return e.bundle(signing_key=f"hmac:{key}")


def _adapter_not_ours(e: Env) -> list[str]:
    folder = e.folder("plain-adapter")
    (folder / "adapter_config.json").write_text("{}")
    return ["evaluate", "--run-dir", str(e.run), "--adapter", str(folder)]


def _adapter_without_data(e: Env) -> list[str]:
    folder = e.folder("ours")
    write_manifest(folder, Manifest(stage="distill", models={"base": {"spec": {"id": str(e.models["gemma3"])}}}))
    return ["evaluate", "--run-dir", str(e.run), "--adapter", str(folder), "--bundle", str(e.bundle())]


def _adapter_from_another_run(e: Env) -> list[str]:
    """An adapter distilled in another run: its manifest names filter and label outputs this run does not hold."""
    folder = e.folder("elsewhere")
    write_manifest(
        folder,
        Manifest(
            stage="distill",
            models={"base": {"spec": {"id": str(e.models["gemma3"])}}},
            inputs={"bundle": "b", "filtered": "f", "labelled": "l"},
        ),
    )
    # a run directory with task data and nothing transferred in it
    write_json(
        e.run / "index.json",
        {"slots": {"data": {"stage": "prepare-data", "key": "k", "path": "/nowhere", "recorded_at": 0}}},
    )
    return ["evaluate", "--run-dir", str(e.run), "--adapter", str(folder), "--bundle", str(e.bundle())]


def _adapter_copy(e: Env, change: Callable[[Path], None]) -> str:
    folder = shutil.copytree(e.adapter, e.tmp / "customer-adapter")
    change(folder)
    return str(folder)


def _peft_type(folder: Path, kind: str) -> None:
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps(config | {"peft_type": kind}))


def _damaged_weights(e: Env) -> str:
    folder = shutil.copytree(e.models["gemma3"], e.tmp / "damaged-target")
    for weights in folder.glob("*.safetensors"):
        _edit(weights, lambda d: b"\x07" * 8 + d[8:])  # a header length no file has
    return str(folder)


def _vllm(e: Env, mode: str, suffix: str = "") -> list[str]:
    server = fake_vllm.serve(mode)
    e.servers.append(server)
    target = str(e.models["gemma3"])
    return e.transfer(
        None,
        "--set",
        "generation.backend=vllm",
        "--set",
        f"generation.vllm.servers={{'{target}': '{fake_vllm.url(server)}{suffix}'}}",
    )


def _high_rank(e: Env) -> Path:
    def change(b: Path) -> None:
        config = json.loads((b / "source_adapter" / "adapter_config.json").read_text())
        (b / "source_adapter" / "adapter_config.json").write_text(json.dumps(config | {"r": 1024}))

    return _tampered(e, change, relisted=True)


def _no_bundle_json(b: Path) -> None:
    (b / "bundle.json").unlink()


CASES: list[tuple[str, Callable[[Env], list[str]], str]] = [
    # config files and overrides
    (
        "config file missing",
        lambda e: e.finetune("--config", str(e.tmp / "nope.yaml")),
        "config file .*nope.yaml does not exist; give",
    ),
    (
        "config file is a folder",
        lambda e: e.finetune("--config", str(e.folder("c.yaml"))),
        "is a directory; give the YAML file itself",
    ),
    (
        "config file latin-1",
        lambda e: e.finetune("--config", str(e.file("c.yaml", "task: {name: caf\xe9}\n", "latin-1"))),
        "is not UTF-8 text .*save it as UTF-8",
    ),
    (
        "config file a list",
        lambda e: e.finetune("--config", str(e.file("c.yaml", "- filter\n"))),
        "must hold a mapping of sections",
    ),
    (
        "config file bad yaml",
        lambda e: e.finetune("--config", str(e.file("c.yaml", "filter:\n  n_keep: [3\n"))),
        "is not valid YAML at line 3, column 1: .*fix the file there",
    ),
    (
        "override value not yaml",
        lambda e: e.finetune("--set", "filter.n_keep=[3"),
        "the value is not valid YAML .*a string in quotes",
    ),
    ("override without name", lambda e: e.finetune("--set", "=3"), "empty name before '='; write section.field"),
    ("override without '='", lambda e: e.finetune("--set", "filter n_keep 3"), "not of the form section.field=value"),
    (
        "override into a plain value",
        lambda e: e.finetune("--set", "filter=3", "--set", "filter.n_keep=2"),
        "cannot set fields of filter: it is 3, a plain value.*remove the setting",
    ),
    (
        "override misspelt section",
        lambda e: e.finetune("--set", "filterr.n_keep=2"),
        "unknown config section 'filterr' \\(did you mean 'filter'\\?\\)",
    ),
    (
        "override wrong type",
        lambda e: e.finetune("--set", "filter.n_keep=many"),
        "invalid config: filter.n_keep: .*integer",
    ),
    (
        "budget below n_keep",
        lambda e: e.finetune("--set", "filter.max_generated=1"),
        "filter.max_generated must be at least filter.n_keep",
    ),
    # task data
    (
        "task file missing",
        lambda e: e.finetune("--set", f"task.name=jsonl:{e.tmp / 'none.jsonl'}"),
        "task file .*none.jsonl does not exist; give",
    ),
    (
        "task file binary",
        lambda e: e.finetune("--set", e.task_file(gzip.compress(_rows(40).encode()))),
        "is not UTF-8 text \\(a binary or compressed file\\?\\)",
    ),
    ("task file empty", lambda e: e.finetune("--set", e.task_file("")), "holds no examples; write one"),
    (
        "task rows with wrong fields",
        lambda e: e.finetune("--set", e.task_file('{"question": "q", "answer": "a"}\n')),
        "task.jsonl:1 is not a JSON object with string fields 'input' and 'target'",
    ),
    (
        "task with too few rows",
        lambda e: e.finetune("--set", e.task_file(_rows(20))),
        "has 20 examples but n_train \\+ n_test = 36; lower task.n_train or task.n_test",
    ),
    (
        "unknown task family",
        lambda e: e.finetune("--set", "task.name=hf:squad"),
        "unknown task 'hf:squad'; use bbh:<task>",
    ),
    (
        "task file mixed choices",
        lambda e: e.finetune(
            "--set",
            "task.name=file:"
            + str(
                e.file(
                    "t.yaml",
                    "kind: multiple_choice\nchoices: per_example\ndata: "
                    + str(e.file("d.jsonl", _rows(40).replace("}", ', "choices": ["True", "False"]}', 1))),
                )
            ),
        ),
        "row 2 has no list of choices in 'choices', but the task file says choices: per_example",
    ),
    (
        "task file multiple choice without choices",
        lambda e: e.finetune(
            "--set",
            "task.name=file:"
            + str(e.file("t.yaml", "kind: multiple_choice\ndata: " + str(e.file("d.jsonl", _rows(40))))),
        ),
        "a multiple_choice task needs choices: a list of answers, or per_example",
    ),
    (
        "task file unknown metric",
        lambda e: e.finetune(
            "--set",
            "task.name=file:"
            + str(e.file("t.yaml", "kind: free_form\nmetric: f1\ndata: " + str(e.file("d.jsonl", _rows(40))))),
        ),
        "t.yaml: metric: Input should be 'acc', 'exact_match', 'regex' or 'code_execution' \\(got 'f1'\\)",
    ),
    (
        "task file empty metric",
        lambda e: e.finetune(
            "--set",
            "task.name=file:"
            + str(e.file("t.yaml", "kind: free_form\nmetric: ''\ndata: " + str(e.file("d.jsonl", _rows(40))))),
        ),
        "t.yaml: metric: Input should be .* \\(got ''\\)",
    ),
    (
        "task file regex without pattern",
        lambda e: e.finetune(
            "--set",
            "task.name=file:"
            + str(e.file("t.yaml", "kind: free_form\nmetric: regex\ndata: " + str(e.file("d.jsonl", _rows(40))))),
        ),
        "metric regex needs answer_pattern, e.g.",
    ),
    (
        "task file invalid regex",
        lambda e: e.finetune(
            "--set",
            "task.name=file:"
            + str(
                e.file(
                    "t.yaml",
                    "kind: free_form\nmetric: regex\nanswer_pattern: '(x'\ndata: " + str(e.file("d.jsonl", _rows(40))),
                )
            ),
        ),
        "answer_pattern '\\(x' is not a valid regular expression \\(missing \\)",
    ),
    (
        "task file code without tests",
        lambda e: e.finetune(
            "--set",
            "task.name=file:"
            + str(
                e.file("t.yaml", "kind: free_form\nmetric: code_execution\ndata: " + str(e.file("d.jsonl", _rows(40))))
            ),
        ),
        "d.jsonl, row 1 has no test code in 'tests'; a code_execution task runs each row's tests",
    ),
    # model specs and folders
    (
        "source model folder missing",
        lambda e: e.finetune("--set", f"source_model.id={e.tmp / 'no-model'}"),
        "model folder .*no-model does not exist",
    ),
    (
        "source folder without config.json",
        lambda e: e.finetune("--set", f"source_model.id={e.folder('m')}"),
        "has no config.json; point at a transformers model folder",
    ),
    (
        "unknown embedded model",
        lambda e: e.finetune("--set", "source_model.id=embedded:llama-9000"),
        "unknown embedded model 'llama-9000'; known: ",
    ),
    (
        "discriminator base missing",
        lambda e: e.finetune("--set", f"discriminator_model={{id: {e.tmp / 'nod'}}}"),
        "model folder .*nod does not exist",
    ),
    (
        "target folder missing",
        lambda e: e.transfer(None, "--target", str(e.tmp / "no-target")),
        "model folder .*no-target does not exist",
    ),
    (
        "target folder without config.json",
        lambda e: e.transfer(None, "--target", str(e.folder("t"))),
        "has no config.json",
    ),
    (
        "target weights damaged",
        lambda e: e.transfer(None, "--target", _damaged_weights(e)),
        "damaged-target: model.safetensors is damaged .*copy the model's files again",
    ),
    (
        "hub model neither reachable nor pinned",
        lambda e: e.transfer(None, "--target", "org/never-downloaded"),
        "cannot find which commit hub model 'org/never-downloaded' is at .*pin it with `revision: <commit sha>`",
    ),
    (
        "profile conflicts with the config file",
        lambda e: e.finetune("--profile", "cpu", "--config", str(e.file("c.yaml", "profile: paper\n"))),
        "--profile cpu conflicts with profile: paper in the config; give one of them",
    ),
    # imported adapters
    (
        "import: adapter for another base",
        lambda e: e.finetune("--source-adapter", str(e.adapter), "--set", f"source_model.id={e.models['llama-b']}"),
        "was trained on .*llama.*not on the source model .*llama-b; set source_model.id to its base",
    ),
    (
        "import: no adapter_config.json",
        lambda e: e.finetune("--source-adapter", _adapter_copy(e, lambda f: (f / "adapter_config.json").unlink())),
        "customer-adapter has no adapter_config.json, so it is not a peft adapter folder",
    ),
    (
        "import: unknown PEFT kind",
        lambda e: e.finetune("--source-adapter", _adapter_copy(e, lambda f: _peft_type(f, "IA3"))),
        "holds a IA3 adapter .*translora moves LoRA, DoRA and prompt-tuning",
    ),
    (
        "import: adapter folder missing",
        lambda e: e.finetune("--source-adapter", str(e.tmp / "no-adapter")),
        "adapter folder .*no-adapter does not exist or is not a folder",
    ),
    (
        "import: revision without adapter",
        lambda e: e.finetune("--source-adapter-revision", "abc"),
        "--source-adapter-revision needs --source-adapter",
    ),
    # fleet upgrades
    (
        "upgrade target missing",
        lambda e: ["upgrade", "--target", str(e.tmp / "no-target"), "--run-dir", str(e.run)],
        "model folder .*no-target does not exist",
    ),
    (
        "upgrade registry URL unknown",
        lambda e: [
            "upgrade",
            "--target",
            str(e.models["gemma3"]),
            "--registry",
            "nosuchdb://x",
            "--run-dir",
            str(e.run),
        ],
        "registry",
    ),
    # bundles
    ("bundle folder missing", lambda e: e.transfer(e.tmp / "no-bundle"), "does not exist or is not a folder"),
    ("bundle is a file", lambda e: e.transfer(e.file("bundle.tar")), "does not exist or is not a folder"),
    (
        "no bundle.json",
        lambda e: e.transfer(_tampered(e, _no_bundle_json)),
        "is not a transfer bundle \\(no bundle.json\\); run `translora finetune` first",
    ),
    (
        "malformed bundle.json",
        lambda e: e.transfer(_tampered(e, lambda b: (b / "bundle.json").write_text("{"), True)),
        "holds a malformed bundle .*write it again with `translora finetune`",
    ),
    (
        "truncated adapter weights",
        lambda e: e.transfer(
            _tampered(
                e, lambda b: _edit(b / "source_adapter" / "adapter_model.safetensors", lambda d: d[: len(d) // 2])
            )
        ),
        "source_adapter/adapter_model.safetensors was changed after it was written.*intact copy",
    ),
    (
        "missing discriminator",
        lambda e: e.transfer(_tampered(e, lambda b: shutil.rmtree(b / "discriminator"))),
        "is incomplete: discriminator/.* is missing; get an intact copy",
    ),
    (
        "tampered seeds",
        lambda e: e.transfer(
            _tampered(e, lambda b: _edit(b / "seeds.jsonl", lambda d: d + b'{"input": "ignore the task"}\n'))
        ),
        "seeds.jsonl was changed after it was written",
    ),
    (
        "file added to the bundle",
        lambda e: e.transfer(_tampered(e, lambda b: (b / "extra.py").write_text("x"))),
        "holds extra.py, which files.json does not list.*remove it",
    ),
    (
        "link in the bundle",
        lambda e: e.transfer(_tampered(e, lambda b: os.symlink("/etc/hostname", b / "seeds2"))),
        "holds a link \\(seeds2\\); a bundle holds plain files only",
    ),
    (
        "no file list",
        lambda e: e.transfer(_tampered(e, lambda b: (b / "files.json").unlink())),
        "has no files.json .*write it again with `translora finetune`",
    ),
    (
        "file list malformed",
        lambda e: e.transfer(_tampered(e, lambda b: (b / "files.json").write_text('{"files"'))),
        "files.json is malformed .*get an intact copy",
    ),
    (
        "adapter config not peft's",
        lambda e: e.transfer(
            _tampered(e, lambda b: (b / "discriminator" / "adapter_config.json").write_text("[]"), True)
        ),
        "has no valid adapter_config.json .*write the bundle again",
    ),
    (
        "made on another source base",
        lambda e: e.transfer(e.bundle(made_on=e.models["llama-b"])),
        "was made on source \\(teacher\\) base .* but .* here has hash .*set trust.allow_base_mismatch=true",
    ),
    (
        "unsigned when keys are required",
        lambda e: e.transfer(None, "--set", f"trust.trusted_keys=[hmac:{e.hmac}]"),
        "is not signed \\(no files.json.sig\\); accept only bundles signed by a key you trust",
    ),
    (
        "signed by an unknown key",
        lambda e: e.transfer(_signed_by_hmac(e, e.other_hmac), "--set", f"trust.trusted_keys=[hmac:{e.hmac}]"),
        "is signed by key hmac-.* which is not a trusted key.*add that key",
    ),
    (
        "changed after signing",
        lambda e: e.transfer(_signature_broken(e), "--set", f"trust.trusted_keys=[ed25519-pub:{e.ed_public}]"),
        "does not match its signature by key ed25519-.*get an intact copy",
    ),
    (
        "trusted key file missing",
        lambda e: e.transfer(None, "--set", f"trust.trusted_keys=[hmac:{e.tmp / 'k'}]"),
        "key file .*k does not exist",
    ),
    (
        "trusted key of the wrong kind",
        lambda e: e.transfer(None, "--set", f"trust.trusted_keys=[ed25519-pub:{e.hmac}]"),
        "is not an unencrypted PEM Ed25519 public key .*generate_ed25519_keypair",
    ),
    (
        "signing key not a key spec",
        lambda e: e.finetune("--set", "trust.signing_key=secret123"),
        "invalid config: trust.signing_key: .*is not hmac:SECRET_FILE or ed25519:PRIVATE.pem",
    ),
    # adapters
    (
        "evaluate: adapter missing",
        lambda e: ["evaluate", "--run-dir", str(e.run), "--adapter", str(e.tmp / "no")],
        "adapter folder .*no does not exist; give the transferred adapter's folder",
    ),
    (
        "evaluate: adapter not translora's",
        _adapter_not_ours,
        "is not an adapter translora trained \\(its manifest names no base model\\)|manifest.json is missing",
    ),
    ("evaluate: run without data", _adapter_without_data, "has no 'data' yet; run the command that produces it"),
    (
        "evaluate: adapter from another run",
        _adapter_from_another_run,
        "does not hold the filtered inputs that adapter .*elsewhere was distilled from .*give the --run-dir",
    ),
    # generation settings
    (
        "unknown backend",
        lambda e: e.finetune("--set", "generation.backend=tensorrt"),
        "invalid config: generation.backend: Input should be 'hf' or 'vllm'",
    ),
    (
        "negative temperature",
        lambda e: e.finetune("--set", "synthesis.temperature=-1"),
        "invalid config: synthesis.temperature: Input should be greater than or equal to 0",
    ),
    (
        "extra_args widen the host",
        lambda e: e.transfer(None, "--set", "generation.vllm.extra_args=[--host, 0.0.0.0]"),
        "--host is set by translora for the servers it starts",
    ),
    (
        "extra_args replace the key",
        lambda e: e.transfer(None, "--set", "generation.vllm.extra_args=[--api-key=abc]"),
        "--api-key is set by translora",
    ),
    (
        "request timeout zero",
        lambda e: e.transfer(None, "--set", "generation.vllm.request_timeout=0"),
        "generation.vllm.request_timeout: Input should be greater than 0",
    ),
    # vLLM servers
    (
        "vLLM server unreachable",
        lambda e: e.transfer(
            None,
            "--set",
            "generation.backend=vllm",
            "--set",
            f"generation.vllm.servers={{'{e.models['gemma3']}': 'http://127.0.0.1:{fake_vllm.free_port()}'}}",
        ),
        "vLLM server at .* is not answering: .*start it, or fix generation.vllm.servers",
    ),
    (
        "vLLM server serving another model",
        lambda e: _vllm(e, "other-model"),
        "serves another model than .*gemma3.*point generation.vllm.servers at a server for that model",
    ),
    ("not a vLLM server", lambda e: _vllm(e, "ok", "/not-vllm"), "does not answer /v1/models as a vLLM server does"),
    (
        "LoRA rank too high for vLLM",
        lambda e: e.transfer(_high_rank(e), "--set", "generation.backend=vllm"),
        "has LoRA rank 1024, above the 512 vLLM serves; use generation.backend=hf",
    ),
    (
        "DoRA adapter on vLLM",
        lambda e: e.transfer(
            make_bundle(e.tmp / "dora-bundle", e.dora, e.models["llama"]), "--set", "generation.backend=vllm"
        ),
        "vLLM serves LoRA adapters only.*Use generation.backend=hf",
    ),
    # run directory and store
    (
        "run dir is a file",
        lambda e: e.finetune("--run-dir", str(e.file("run-file"))),
        "--run-dir .*run-file is a file; give a folder",
    ),
    (
        "run index malformed",
        lambda e: e.finetune() if e.file("run/index.json", "[1, 2") else [],
        "is not a translora run index .*use another --run-dir",
    ),
    (
        "store is a file",
        lambda e: e.finetune("--store", str(e.file("store-file"))),
        "cannot use .*store-file as the artifact store .*give a folder with --store",
    ),
]


def _signature_broken(e: Env) -> Path:
    """Signed, then one seed changed and the file list rewritten to match: only the signature can tell."""
    b = e.bundle(signing_key=f"ed25519:{e.ed_private}")
    _edit(b / "seeds.jsonl", lambda d: d.replace(b"True", b"False", 1))
    relist(b)
    return b


def _no_flow() -> None:
    raise AssertionError("the command got as far as starting its flow")


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def shared(tiny_models, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad-inputs")
    keys = root / "keys"
    generate_hmac_key(keys / "hmac")
    generate_hmac_key(keys / "other-hmac")
    generate_ed25519_keypair(keys / "ed.pem", keys / "ed.pub")
    return {
        "adapter": make_adapter(tiny_models["llama"], root / "adapter"),
        "dora": make_adapter(tiny_models["llama"], root / "dora", kind="dora"),
        "keys": keys,
    }


@pytest.mark.parametrize("make_argv, phrase", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(make_argv, phrase, shared, tiny_models, tmp_path, monkeypatch, capsys):
    import re

    monkeypatch.setenv("TRANSLORA_HOME", str(tmp_path / "home"))  # the fingerprint cache may change; nothing else
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    keys = work / "keys"
    shutil.copytree(shared["keys"], keys)
    env = Env(
        work,
        tiny_models,
        shared["adapter"],
        shared["dora"],
        keys / "hmac",
        keys / "other-hmac",
        keys / "ed.pem",
        keys / "ed.pub",
    )
    # An earlier run's outputs, which a failed command must leave as they are.
    env.run.mkdir()
    (env.run / "config.yaml").write_text("earlier: run\n")
    store = work / "store"
    (store / "distill" / "k1").mkdir(parents=True)
    (store / "distill" / "k1" / "manifest.json").write_text("{}")
    monkeypatch.setenv("TRANSLORA_STORE", str(store))
    monkeypatch.setattr(cli, "start_temporary_server", _no_flow)  # every case must be refused before any flow
    argv = make_argv(env)
    before = _snapshot(work)
    try:
        code = cli.main(argv)
    finally:
        for server in env.servers:
            server.shutdown()
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert re.search(phrase, lines[0]), lines[0]
    assert _snapshot(work) == before  # nothing written, moved or removed

"""The store in S3-compatible object storage (translora/objectstore.py), against a real S3 server (moto's, on
loopback). The multi-machine tests run processes that share nothing but the bucket: each has its own TRANSLORA_HOME,
so its own read cache."""

import json
import logging
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from translora.config import load_config
from translora.stage import Stage, execute, key_material
from translora.store import RunIndex, Store, stage_key

BUCKET = "translora-test"
LEASE = 3  # seconds: a killed holder's lease is taken over this long after its last heartbeat


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def url(s3_endpoint, monkeypatch, request) -> str:
    """A fresh prefix in the bucket; the endpoint and credentials come from the standard AWS variables, which the
    spawned processes inherit."""
    import boto3

    for name, value in {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client = boto3.client("s3")
    if BUCKET not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=BUCKET)
    return f"s3://{BUCKET}/{request.node.name}?lease_seconds={LEASE}"


def _objects(store, prefix: str) -> list[str]:
    """The names under `prefix` (relative to the store's prefix)."""
    listed = store.client.list_objects_v2(Bucket=store.bucket, Prefix=store._key(prefix))
    return sorted(o["Key"][len(store.prefix) + 1 :] for o in listed.get("Contents", []))


# -------------------------------------------------------------- a stage that several processes run


def _slow_stage(ctx) -> dict:
    with open(ctx.config.task.name.split(":", 1)[1], "a") as fh:  # count the computations in a file
        fh.write(f"ran {os.getpid()}\n")
    time.sleep(1.5)
    (ctx.out / "result.txt").write_text("done")
    (ctx.out / "weights.bin").write_bytes(os.urandom(64 * 1024))  # not reproducible, like a training's output
    return {}


SLOW = Stage("slow", _slow_stage, ("task",), slot="slow")


def _config(counter: Path):
    return load_config("cpu", overrides=[f"task.name=jsonl:{counter}"])


def _slow_key(counter: Path) -> str:
    return stage_key(SLOW.name, *key_material(SLOW, _config(counter), {}, {}))


def _machine(url: str, home: str, counter: str, results, start=None, stall_flag: str | None = None) -> None:
    """One machine: its own TRANSLORA_HOME (read cache); runs SLOW and reports what happened. With `stall_flag`,
    publishing stops after its first uploaded file (the flag names it) until the process is killed."""
    os.environ["TRANSLORA_HOME"] = home
    logged: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    logging.getLogger("translora.objectstore").addHandler(handler)
    if stall_flag:
        from translora.objectstore import S3Store

        upload = S3Store._put_file

        def stall(self, file, name):
            upload(self, file, name)
            Path(stall_flag).write_text(name)
            time.sleep(600)

        S3Store._put_file = stall
    store, config = Store(url), _config(Path(counter))
    if start is not None:
        start.wait(60)  # every machine asks for the key at the same moment
    began = time.time()
    out = execute(SLOW, config, {}, {}, store)
    results.put(
        {
            "path": str(out.path),
            "cached": out.cached,
            "seconds": time.time() - began,
            "log": logged,
            "text": (out.path / "result.txt").read_text(),
            "cache": str(store.root),
        }
    )


def _start(ctx, results, url, home, counter, **kwargs):
    process = ctx.Process(target=_machine, args=(url, str(home), str(counter), results), kwargs=kwargs)
    process.start()
    return process


def _finish(processes, results, n: int) -> list[dict]:
    for p in processes:
        p.join(120)
    assert [p.exitcode for p in processes] == [0] * len(processes)
    return [results.get(timeout=5) for _ in range(n)]


# -------------------------------------------------------------- tests


def test_the_url_picks_the_store(tmp_path):
    from translora.objectstore import S3Store

    assert type(Store(tmp_path)) is Store
    s3 = Store("s3://bucket/some/prefix?lease_seconds=5&endpoint_url=http://127.0.0.1:9&cache=" + str(tmp_path))
    assert isinstance(s3, S3Store) and s3.url == "s3://bucket/some/prefix" and s3.lease_seconds == 5
    assert s3.endpoint_url == "http://127.0.0.1:9" and s3.root == tmp_path and s3.path("a", "k") == tmp_path / "a/k"


def test_a_second_machine_reuses_the_first_ones_output(url, tmp_path):
    ctx, counter = multiprocessing.get_context("spawn"), tmp_path / "calls.txt"
    results = ctx.Queue()
    [first] = _finish([_start(ctx, results, url, tmp_path / "home-a", counter)], results, 1)
    [second] = _finish([_start(ctx, results, url, tmp_path / "home-b", counter)], results, 1)
    assert not first["cached"] and second["cached"]
    assert len(counter.read_text().splitlines()) == 1  # computed once, downloaded by the second
    assert second["text"] == "done" and Path(second["path"]).is_relative_to(tmp_path / "home-b")
    assert (Path(first["path"]) / "weights.bin").read_bytes() == (Path(second["path"]) / "weights.bin").read_bytes()
    RunIndex(tmp_path / "run").record("slow", "slow", Path(second["path"]).name, Path(second["path"]))
    assert (tmp_path / "run" / "slow").resolve() == Path(second["path"])  # run folders link into the cache


def test_two_machines_at_once_compute_a_key_once(url, tmp_path):
    ctx, counter = multiprocessing.get_context("spawn"), tmp_path / "calls.txt"
    results, start = ctx.Queue(), ctx.Barrier(2)
    machines = [_start(ctx, results, url, tmp_path / f"home-{n}", counter, start=start) for n in "ab"]
    outcomes = _finish(machines, results, 2)
    assert len(counter.read_text().splitlines()) == 1
    assert sorted(o["cached"] for o in outcomes) == [False, True]
    waiter = next(o for o in outcomes if o["cached"])
    assert waiter["seconds"] > 1.0  # it waited on the lease while the other computed, then downloaded
    assert {o["text"] for o in outcomes} == {"done"}
    assert len({(Path(o["path"]) / "weights.bin").read_bytes() for o in outcomes}) == 1  # the published one


def test_a_writer_killed_mid_upload_leaves_nothing_visible_and_its_lease_is_taken_over(url, tmp_path):
    ctx, counter, flag = multiprocessing.get_context("spawn"), tmp_path / "calls.txt", tmp_path / "uploaded"
    results = ctx.Queue()
    killed = _start(ctx, results, url, tmp_path / "home-a", counter, stall_flag=str(flag))
    deadline = time.time() + 60
    while not flag.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert flag.exists(), "the first writer never uploaded anything"

    reader, key = Store(url, cache=tmp_path / "reader"), _slow_key(counter)
    assert _objects(reader, f"slow/{key}/") == [flag.read_text()[len(reader.prefix) + 1 :]]  # half uploaded
    assert not reader.has("slow", key) and reader.problem("slow", key).startswith("it is not published")
    os.kill(killed.pid, signal.SIGKILL)
    killed.join(10)
    assert not reader.has("slow", key)  # still nothing visible
    assert _objects(reader, "locks/") == [f"locks/{key}"]  # its lease outlives it

    [after] = _finish([_start(ctx, results, url, tmp_path / "home-b", counter)], results, 1)
    assert not after["cached"] and after["text"] == "done"
    assert any("was not renewed" in line and "taking it over" in line for line in after["log"])
    assert len(counter.read_text().splitlines()) == 2  # the killed one's computation, then the new holder's
    marker = json.loads(
        reader.client.get_object(Bucket=reader.bucket, Key=reader._key("slow", key, "complete.json"))["Body"].read()
    )
    uploads = {name.split("/")[2] for name in _objects(reader, f"slow/{key}/") if not name.endswith("complete.json")}
    assert uploads == {marker["upload"]}  # the killed writer's partial upload is gone
    assert _objects(reader, "locks/") == []  # released
    assert reader.problem("slow", key) is None and (reader.path("slow", key) / "result.txt").read_text() == "done"


def _counted(counter: Path):
    def run(ctx) -> dict:
        with open(counter, "a") as fh:
            fh.write("ran\n")
        (ctx.out / "result.txt").write_text("intact")
        return {}

    return run


def test_a_damaged_cached_copy_is_downloaded_again(url, tmp_path, caplog):
    cfg, counter = load_config("cpu"), tmp_path / "calls.txt"
    stage = Stage("counted", _counted(counter), (), slot="counted")
    made = execute(stage, cfg, {}, {}, Store(url, cache=tmp_path / "a"))
    reader = Store(url, cache=tmp_path / "b")
    copy = execute(stage, cfg, {}, {}, reader)
    assert copy.cached and copy.path == tmp_path / "b" / "counted" / made.key
    (copy.path / "result.txt").write_text("edited in the cache")

    with caplog.at_level("WARNING", logger="translora.objectstore"):
        again = execute(stage, cfg, {}, {}, reader)
    assert again.cached and (again.path / "result.txt").read_text() == "intact"
    assert counter.read_text() == "ran\n"  # downloaded again, not computed again
    assert any("is damaged" in r.getMessage() and "downloading it again" in r.getMessage() for r in caplog.records)

    # an input reached through a run folder's link into the cache is checked and downloaded again the same way
    link = RunIndex(tmp_path / "run").record("counted", "counted", copy.key, copy.path)
    (link / "result.txt").unlink()
    down = Stage(
        "down",
        lambda ctx: (ctx.out / "read.txt").write_text((ctx.inputs["data"] / "result.txt").read_text()) and {},
        (),
        slot="down",
        inputs=("data",),
    )
    out = execute(down, cfg, {"data": link}, {}, reader)
    assert (out.path / "read.txt").read_text() == "intact"


def test_a_damaged_published_output_is_set_aside_and_computed_again(url, tmp_path):
    cfg, counter = load_config("cpu"), tmp_path / "calls.txt"
    stage = Stage("counted", _counted(counter), (), slot="counted")
    store = Store(url, cache=tmp_path / "a")
    made = execute(stage, cfg, {}, {}, store)
    [file] = [n for n in _objects(store, f"counted/{made.key}/") if n.endswith("result.txt")]
    store.client.put_object(Bucket=store.bucket, Key=store._key(file), Body=b"overwritten in the bucket")

    reader = Store(url, cache=tmp_path / "b")
    assert "hash to" in reader.problem("counted", made.key)  # never installed in the cache
    again = execute(stage, cfg, {}, {}, reader)
    assert not again.cached and counter.read_text() == "ran\nran\n"
    assert (again.path / "result.txt").read_text() == "intact" and reader.problem("counted", made.key) is None
    evidence = _objects(reader, "damaged/counted/")
    assert any(n.endswith("complete.json") for n in evidence) and any(n.endswith("result.txt") for n in evidence)
    assert store.problem("counted", made.key) is None  # the first machine's cache follows the new output
    assert reader.verify() == []

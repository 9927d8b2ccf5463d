"""One contract test suite for every storage backend: a local folder and a real fake-GCS server."""

from __future__ import annotations

import json
import os
import socket
import threading

import pytest

from proxy_task_utils.errors import (
    ConfigurationError,
    NotFoundError,
    PreconditionFailedError,
    TransientStorageError,
    UnsafePathError,
)
from proxy_task_utils.storage import LocalStorage, ObjectInfo, Storage, open_storage

THREADS = 8


@pytest.fixture(params=["local", "gcs"])
def storage(request: pytest.FixtureRequest, tmp_path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "root")
    fake_gcs = request.getfixturevalue("fake_gcs")
    return fake_gcs.storage("root")


def _race(worker, n: int = THREADS) -> list:
    """Run ``worker(i)`` in ``n`` threads released together; return results (or exceptions)."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = worker(i)
        except Exception as exc:  # collected and checked by the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


# -- read / write -----------------------------------------------------------------


def test_round_trip_with_generations(storage: Storage) -> None:
    gen1 = storage.write("a/b.json", b'{"x": 1}')
    assert storage.read("a/b.json") == (b'{"x": 1}', gen1)
    gen2 = storage.write("a/b.json", b"")
    assert gen2 != gen1
    assert storage.read("a/b.json") == (b"", gen2)
    assert storage.exists("a/b.json")
    assert not storage.exists("a/c.json")
    assert not storage.exists("a")  # a folder is not an object


def test_generation_changes_on_every_write(storage: Storage) -> None:
    gens = [storage.write("counter", str(i).encode()) for i in range(50)]
    assert len(set(gens)) == 50
    assert storage.read("counter") == (b"49", gens[-1])


def test_read_missing_raises_not_found(storage: Storage) -> None:
    with pytest.raises(NotFoundError) as info:
        storage.read("no/such/object")
    assert "no/such/object" in str(info.value)
    assert info.value.uri is not None


def test_write_if_absent(storage: Storage) -> None:
    gen = storage.write_if_absent("lock", b"first")
    with pytest.raises(PreconditionFailedError):
        storage.write_if_absent("lock", b"second")
    assert storage.read("lock") == (b"first", gen)


def test_write_if_absent_race_has_exactly_one_winner(storage: Storage) -> None:
    results = _race(lambda i: storage.write_if_absent("claim", f"writer-{i}".encode()))
    winners = [i for i, r in enumerate(results) if isinstance(r, int)]
    losers = [r for r in results if not isinstance(r, int)]
    assert len(winners) == 1, results
    assert all(isinstance(r, PreconditionFailedError) for r in losers), losers
    data, gen = storage.read("claim")
    assert data == f"writer-{winners[0]}".encode()
    assert gen == results[winners[0]]


def test_write_if_generation(storage: Storage) -> None:
    gen1 = storage.write("state.json", b"v1")
    gen2 = storage.write_if_generation("state.json", b"v2", gen1)
    assert gen2 != gen1
    with pytest.raises(PreconditionFailedError):
        storage.write_if_generation("state.json", b"stale", gen1)
    assert storage.read("state.json") == (b"v2", gen2)
    with pytest.raises(PreconditionFailedError):
        storage.write_if_generation("missing.json", b"x", gen2)
    assert not storage.exists("missing.json")


def test_compare_and_swap_race_loses_no_update(storage: Storage) -> None:
    storage.write("counter.json", b'{"n": 0}')
    conflicts = []

    def increment_ten_times(_: int) -> int:
        for _ in range(10):
            while True:
                data, gen = storage.read("counter.json")
                value = json.loads(data)["n"]
                try:
                    storage.write_if_generation("counter.json", json.dumps({"n": value + 1}).encode(), gen)
                    break
                except PreconditionFailedError:
                    conflicts.append(1)
        return 10

    results = _race(increment_ten_times)
    assert results == [10] * THREADS, results
    data, _ = storage.read("counter.json")
    assert json.loads(data) == {"n": 10 * THREADS}


def test_write_not_durable_is_still_atomic_and_seen_at_once(storage: Storage) -> None:
    gen1 = storage.write("t/controller_alive_timestamp.json", b'{"timestamp": 1.0}', durable=False)
    assert storage.read("t/controller_alive_timestamp.json") == (b'{"timestamp": 1.0}', gen1)
    trial = storage.child("t")
    gen2 = trial.write("controller_alive_timestamp.json", b'{"timestamp": 2.0}', durable=False)
    assert gen2 != gen1
    assert storage.generations(["t/controller_alive_timestamp.json"]) == {"t/controller_alive_timestamp.json": gen2}
    assert [o.name for o in storage.list("t/")] == ["t/controller_alive_timestamp.json"]  # no temp file left


def test_local_write_not_durable_skips_fsync_only(tmp_path, monkeypatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    storage = LocalStorage(tmp_path)
    storage.write("a/hb.json", b"1", durable=False)
    storage.child("a").write("hb.json", b"2", durable=False)
    assert synced == []
    storage.write("a/hb.json", b"3")
    assert len(synced) == 2  # the file, then its folder
    assert storage.read("a/hb.json")[0] == b"3"


def test_generations(storage: Storage) -> None:
    gen = storage.write("1/m.json", b"m")
    names = ["1/m.json", "1/missing.json", "2/m.json", "./1/m.json"]
    assert storage.generations(names) == {"1/m.json": gen, "1/missing.json": None, "2/m.json": None, "./1/m.json": gen}
    assert storage.child("1").generations(["m.json", "x", "./m.json"]) == {"m.json": gen, "x": None, "./m.json": gen}
    assert storage.child("nothing").generations(["m.json"]) == {"m.json": None}
    with pytest.raises(UnsafePathError):
        storage.generations(["1/../../escape"])


# -- list / delete / child ------------------------------------------------------------


def _fill(storage: Storage) -> None:
    for name in ["trial/2/m.json", "trial/1/m.json", "trial/1/.hidden", "trial10/x", "top.json", "tz/a"]:
        storage.write(name, name.encode())


def test_list_by_prefix(storage: Storage) -> None:
    assert storage.list() == []
    _fill(storage)
    names = [o.name for o in storage.list()]
    assert names == ["top.json", "trial/1/m.json", "trial/2/m.json", "trial10/x", "tz/a"]
    assert [o.name for o in storage.list("trial/")] == ["trial/1/m.json", "trial/2/m.json"]
    assert [o.name for o in storage.list("tr")] == ["trial/1/m.json", "trial/2/m.json", "trial10/x"]
    assert [o.name for o in storage.list("trial/1")] == ["trial/1/m.json"]
    assert storage.list("nothing") == []
    infos = storage.list("top")
    assert infos == [ObjectInfo("top.json", storage.read("top.json")[1])]


def test_list_with_glob(storage: Storage) -> None:
    _fill(storage)
    storage.write("trial/1/ckpt/m.json", b"deeper")
    storage.write("trial/3/s.json", b"s")
    assert [o.name for o in storage.list(glob="trial/*/m.json")] == ["trial/1/m.json", "trial/2/m.json"]
    assert [o.name for o in storage.list(glob="*/*/{m,s}.json")] == [
        "trial/1/m.json",
        "trial/2/m.json",
        "trial/3/s.json",
    ]
    assert [o.name for o in storage.list(glob="t?/a")] == ["tz/a"]
    assert [o.name for o in storage.list(glob="*")] == ["top.json"]  # '*' stays within one level
    assert [o.name for o in storage.list("trial/2", glob="*/*/m.json")] == ["trial/2/m.json"]
    assert [o.name for o in storage.child("trial").list(glob="*/m.json")] == ["1/m.json", "2/m.json"]
    assert storage.list(glob="*/*/.hidden") == []  # hidden files stay hidden
    gen = storage.read("tz/a")[1]
    assert storage.list(glob="tz/{a,b}") == [ObjectInfo("tz/a", gen)]


def test_list_with_glob_below_a_folder_named_with_glob_characters(storage: Storage) -> None:
    odd = storage.child("odd{1,2}*")
    odd.write("1/m.json", b"m")
    storage.write("odd1/1/m.json", b"not below the child")
    assert [o.name for o in odd.list(glob="*/m.json")] == ["1/m.json"]


@pytest.mark.parametrize("glob", ["**/m.json", "trial/[12]/m.json", "{a,{b}}", "{a", "a/", "/a", "{a/b}", "a//b", ""])
def test_list_refuses_globs_outside_the_shared_subset(storage: Storage, glob: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        storage.list(glob=glob)
    assert "glob" in str(info.value)


def test_delete_is_idempotent(storage: Storage) -> None:
    storage.write("a/x", b"1")
    storage.delete("a/x")
    storage.delete("a/x")
    storage.delete("never/existed")
    assert not storage.exists("a/x")
    with pytest.raises(NotFoundError):
        storage.read("a/x")
    assert storage.list() == []
    storage.write_if_absent("a/x", b"again")  # a deleted object can be created again
    assert storage.read("a/x")[0] == b"again"


def test_child_views(storage: Storage) -> None:
    trial = storage.child("job", "trial-1")
    assert trial.uri == storage.child_uri("job/trial-1")
    gen = trial.write("metrics.json", b"m")
    assert storage.read("job/trial-1/metrics.json") == (b"m", gen)
    assert [o.name for o in trial.list()] == ["metrics.json"]
    assert trial.exists("metrics.json")
    deeper = trial.child("sub")
    deeper.write("f", b"f")
    assert [o.name for o in trial.list()] == ["metrics.json", "sub/f"]
    assert [o.name for o in trial.list("s")] == ["sub/f"]
    assert trial.write_if_generation("metrics.json", b"n", gen) != gen
    trial.delete("metrics.json")
    assert [o.name for o in storage.list()] == ["job/trial-1/sub/f"]
    with pytest.raises(UnsafePathError):
        trial.read("../escape")


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "a\x00b", "", "a\\b"])
def test_unsafe_names_are_refused(storage: Storage, name: str) -> None:
    with pytest.raises(UnsafePathError):
        storage.write(name, b"x")
    with pytest.raises(UnsafePathError):
        storage.read(name)
    with pytest.raises(UnsafePathError):
        storage.child(name)


def test_request_count_increments(storage: Storage) -> None:
    before = storage.request_count
    storage.write("x", b"1")
    storage.read("x")
    storage.exists("x")
    storage.list()
    storage.delete("x")
    assert storage.request_count - before == 5
    assert storage.child("sub").request_count == storage.request_count


# -- GCS specifics --------------------------------------------------------------------


def test_requests_per_operation_on_gcs(fake_gcs) -> None:
    from proxy_task_utils.storage.gcs import GCSStorage

    storage = fake_gcs.storage()
    assert isinstance(storage, GCSStorage)

    def cost(op) -> int:
        before = storage.request_count
        op()
        return storage.request_count - before

    assert cost(lambda: storage.write("a", b"1")) == 1
    gen = storage.read("a")[1]
    assert cost(lambda: storage.read("a")) == 1
    assert cost(lambda: storage.write_if_generation("a", b"2", gen)) == 1
    assert cost(lambda: storage.write_if_absent("b", b"1")) == 1
    assert cost(lambda: storage.exists("b")) == 1
    assert cost(lambda: storage.exists("nope")) == 1
    assert cost(lambda: storage.list()) == 1
    assert cost(lambda: storage.delete("nope")) == 1
    with pytest.raises(NotFoundError):
        storage.read("nope")


def test_gcs_list_pages_count_one_request_each(fake_gcs, monkeypatch) -> None:
    from proxy_task_utils.storage import gcs as _gcs

    storage = fake_gcs.storage("paged")
    names = [f"obj/{i:03d}" for i in range(25)]
    for name in names:
        storage.write(name, b"x")
    real = _gcs.gcs.Client.list_blobs

    def small_pages(self, *args, **kwargs):
        return real(self, *args, max_results=None, page_size=10, **kwargs)

    monkeypatch.setattr(_gcs.gcs.Client, "list_blobs", small_pages)
    before = storage.request_count
    assert [o.name for o in storage.list("obj/")] == names
    assert storage.request_count - before == 3


def test_gcs_list_sends_match_glob_and_filters_what_the_server_sends(fake_gcs, monkeypatch) -> None:
    from proxy_task_utils.storage import gcs as _gcs

    storage = fake_gcs.storage("job", "nas{x}", "search")
    for name in ["1/TRIAL_TRAINING_METRICS.json", "1/ckpt/model.pt", "2/job_status.json", "2/other.json"]:
        storage.write(name, b"x")
    sent: list[object] = []
    real = _gcs.gcs.Client.list_blobs

    def spy(self, *args, **kwargs):
        sent.append(kwargs.get("match_glob"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(_gcs.gcs.Client, "list_blobs", spy)
    found = storage.list(glob="*/{TRIAL_TRAINING_METRICS.json,job_status.json}")
    assert [o.name for o in found] == ["1/TRIAL_TRAINING_METRICS.json", "2/job_status.json"]
    # the whole object name, the root's odd segment widened to '*' (the prefix still pins it)
    assert sent == ["job/*/search/*/{TRIAL_TRAINING_METRICS.json,job_status.json}"]
    storage.list()
    assert sent[-1] is None


def test_gcs_placeholders_and_hidden_objects_are_not_listed(fake_gcs) -> None:
    from proxy_task_utils.storage.gcs import shared_client

    raw = fake_gcs.storage()
    bucket = shared_client().bucket(fake_gcs.bucket)
    bucket.blob("root/folder/").upload_from_string(b"")  # a console-made folder placeholder
    bucket.blob("root/folder/.tmp").upload_from_string(b"")
    raw.write("root/folder/real", b"r")
    assert [o.name for o in raw.child("root").list()] == ["folder/real"]


def test_shared_client_is_reused(fake_gcs) -> None:
    from proxy_task_utils.storage.gcs import shared_client

    a = fake_gcs.storage("a")
    b = open_storage(fake_gcs.uri + "/b")
    assert a._client is b._client is shared_client()


def test_gcs_uri_without_bucket_is_a_configuration_error(fake_gcs) -> None:
    with pytest.raises(ConfigurationError, match="no bucket"):
        open_storage("gs://")
    with pytest.raises(ConfigurationError, match="no bucket"):
        open_storage("gs:///prefix")
    with pytest.raises(ConfigurationError, match="bucket"):
        open_storage("gs://Bad_Bucket!")


def test_transient_errors_after_retries(monkeypatch) -> None:
    pytest.importorskip("google.cloud.storage")
    from proxy_task_utils.storage.gcs import GCSStorage

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave the block: connections are refused
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    # The first back-off sleep is at most 1 s, so a 1.5 s budget always retries at least once.
    patient = GCSStorage("unreachable-bucket", "p", retry_timeout=1.5, timeout=1.0)
    with pytest.raises(
        TransientStorageError, match=r"(?s)read gs://unreachable-bucket/p/x still failing after retrying.*refused"
    ):
        patient.read("x")
    assert patient.request_count >= 2  # every attempt is counted, retries included
    quick = GCSStorage("unreachable-bucket", "p", retry_timeout=0.3, timeout=1.0)
    ops = [
        lambda: quick.write("x", b"1"),
        lambda: quick.write_if_absent("x", b"1"),
        lambda: quick.write_if_generation("x", b"1", 7),
        lambda: quick.exists("x"),
        lambda: quick.list(),
    ]
    for op in ops:
        with pytest.raises(TransientStorageError, match="still failing after retrying"):
            op()
    with pytest.raises(TransientStorageError):
        quick.delete("x")  # a missing object is fine, an unreachable server is not


# -- open_storage dispatch ------------------------------------------------------------


def test_open_storage_dispatch(fake_gcs, tmp_path) -> None:
    from proxy_task_utils.storage.gcs import GCSStorage

    via_gs = open_storage(f"gs://{fake_gcs.bucket}/p")
    via_mount = open_storage(f"/gcs/{fake_gcs.bucket}/p")
    assert isinstance(via_gs, GCSStorage) and isinstance(via_mount, GCSStorage)
    assert via_gs.uri == via_mount.uri == f"gs://{fake_gcs.bucket}/p"
    gen = via_gs.write("shared.json", b"same object")
    assert via_mount.read("shared.json") == (b"same object", gen)
    local = open_storage(tmp_path / "folder")
    assert isinstance(local, LocalStorage)
    assert local.uri == str(tmp_path / "folder")
    assert isinstance(open_storage("relative/dir"), LocalStorage)


# -- LocalStorage specifics ------------------------------------------------------------


def test_local_readers_never_see_a_torn_file(tmp_path) -> None:
    storage = LocalStorage(tmp_path, fsync=False)
    payloads = [json.dumps({"v": i, "pad": "x" * 400_000}).encode() for i in range(3)]
    storage.write("big.json", payloads[0])
    stop = threading.Event()
    reads: list[int] = []
    bad: list[bytes] = []

    def reader() -> None:
        while not stop.is_set():
            data, _ = storage.read("big.json")
            if data not in payloads:
                bad.append(data[:80])
            reads.append(1)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(60):
            storage.write("big.json", payloads[i % 3])
    finally:
        stop.set()
        thread.join()
    assert not bad
    assert reads
    assert [o.name for o in storage.list()] == ["big.json"]  # no temp or lock file is listed
    assert not [n for n in os.listdir(tmp_path) if ".tmp." in n]  # no temp file left behind

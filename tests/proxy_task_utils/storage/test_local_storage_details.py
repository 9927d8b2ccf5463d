"""LocalStorage details: error messages and URIs, request counts, file modes, generations, cleanup."""

from __future__ import annotations

import os

import pytest

import proxy_task_utils.storage.local as local_mod
from proxy_task_utils.errors import NotFoundError, PreconditionFailedError, StorageError
from proxy_task_utils.storage import LocalStorage, ObjectInfo, join_uri, split_uri
from proxy_task_utils.storage.base import _SubStorage, compile_glob


def test_a_new_storage_has_made_no_request(tmp_path):
    assert LocalStorage(tmp_path).request_count == 0


@pytest.mark.parametrize(
    ("op", "count"),
    [
        (lambda s: s.write("x", b"1"), 1),
        (lambda s: s.write_if_absent("y", b"1"), 1),
        (lambda s: s.write_if_generation("x", b"2", s.read("x")[1]), 2),
        (lambda s: s.generations(["x", "y", "z"]), 1),
        (lambda s: s.exists("x"), 1),
        (lambda s: s.read("x"), 1),
        (lambda s: s.list(glob="*"), 1),
        (lambda s: s.delete("x"), 1),
    ],
)
def test_each_call_is_one_request(tmp_path, op, count):
    storage = LocalStorage(tmp_path)
    storage.write("x", b"0")
    before = storage.request_count
    op(storage)
    assert storage.request_count - before == count


def test_path_keeps_spaces_inside_names(tmp_path):
    storage = LocalStorage(tmp_path)
    assert storage.path("a b/c d") == os.path.join(str(tmp_path), "a b", "c d")
    storage.write("a b/c d", b"1")
    assert (tmp_path / "a b" / "c d").read_bytes() == b"1"
    assert [o.name for o in storage.list("a b/")] == ["a b/c d"]
    assert storage.root == str(tmp_path) == storage.uri


def test_reading_a_folder_is_not_found_with_its_path(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write("d/x", b"1")
    with pytest.raises(NotFoundError) as info:
        storage.read("d")
    assert str(info.value) == f"{tmp_path / 'd'} is a folder, not a file"
    assert info.value.uri == str(tmp_path / "d")
    with pytest.raises(NotFoundError) as info:
        storage.read("nothing")
    assert str(info.value) == f"{tmp_path / 'nothing'} does not exist"
    assert info.value.uri == str(tmp_path / "nothing")


def test_other_read_errors_are_storage_errors_with_the_path(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write("f", b"1")
    with pytest.raises(StorageError) as info:
        storage.read("f/below")  # a file where a folder should be
    assert str(info.value).startswith(f"cannot read {tmp_path / 'f' / 'below'}: ")
    assert info.value.uri == str(tmp_path / "f" / "below")
    assert not isinstance(info.value, NotFoundError)


def test_writing_below_a_file_is_a_storage_error_with_the_path(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write("f", b"1")
    with pytest.raises(StorageError) as info:
        storage.write_if_absent("f/x", b"2")
    assert str(info.value).startswith(f"cannot create folder for {tmp_path / 'f' / 'x'}: ")
    assert info.value.uri == str(tmp_path / "f" / "x")


def test_create_only_refusal_names_the_path(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write("x", b"1")
    with pytest.raises(PreconditionFailedError) as info:
        storage.write_if_absent("x", b"2")
    assert str(info.value) == f"{tmp_path / 'x'} already exists"
    assert info.value.uri == str(tmp_path / "x")
    assert not [n for n in os.listdir(tmp_path) if ".tmp." in n]


def test_compare_and_swap_refusals_name_path_and_generations(tmp_path):
    storage = LocalStorage(tmp_path)
    with pytest.raises(PreconditionFailedError) as info:
        storage.write_if_generation("x", b"1", 5)
    assert str(info.value) == f"{tmp_path / 'x'} does not exist (expected generation 5)"
    assert info.value.uri == str(tmp_path / "x")
    gen = storage.write("x", b"1")
    with pytest.raises(PreconditionFailedError) as info:
        storage.write_if_generation("x", b"2", gen - 1)
    assert str(info.value) == f"{tmp_path / 'x'} changed: generation {gen}, expected {gen - 1}"
    assert info.value.uri == str(tmp_path / "x")


def test_files_are_written_with_mode_644(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write("a", b"1")
    storage.write_if_absent("b", b"1")
    old = os.umask(0)
    try:
        storage.write("c", b"1")
    finally:
        os.umask(old)
    for name in ("a", "b", "c"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o644, name


def test_generation_is_one_more_than_the_last_when_the_clock_lags(tmp_path, monkeypatch):
    storage = LocalStorage(tmp_path, fsync=False)
    monkeypatch.setattr(local_mod.time, "time_ns", lambda: 1000)
    first = storage.write("x", b"1")
    assert first == 1000
    assert storage.write("x", b"2") == 1001
    assert storage.write_if_generation("x", b"3", 1001) == 1002
    assert storage.read("x") == (b"3", 1002)
    assert storage.write("new", b"1") == 1000  # a new object starts from the clock


def test_temp_files_are_made_beside_the_object(tmp_path, monkeypatch):
    other = "/dev/shm" if os.path.isdir("/dev/shm") else None
    if other is None:
        pytest.skip("needs a second file system for the working directory")
    work = os.path.join(other, f"cwd-{os.getpid()}")
    os.makedirs(work, exist_ok=True)
    monkeypatch.chdir(work)
    storage = LocalStorage(tmp_path)
    storage.write("x", b"1")  # a temp file in the working directory could not be renamed across devices
    storage.write_if_absent("y", b"1")
    assert os.listdir(work) == []
    os.rmdir(work)


def test_create_only_fsyncs_the_data_and_the_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(local_mod.os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    LocalStorage(tmp_path).write_if_absent("x", b"1")
    assert len(synced) == 2
    synced.clear()
    LocalStorage(tmp_path, fsync=False).write_if_absent("y", b"1")
    assert synced == []


def test_a_failed_write_leaves_no_temp_file_and_keeps_its_error(tmp_path, monkeypatch):
    storage = LocalStorage(tmp_path)
    storage.write("x", b"old")

    def broken_fsync(fd):
        raise OSError(5, "disk on fire")

    monkeypatch.setattr(local_mod.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk on fire"):
        storage.write("x", b"new")
    monkeypatch.undo()

    def broken_utime(*args, **kwargs):
        raise OSError(5, "no times today")

    monkeypatch.setattr(local_mod.os, "utime", broken_utime)
    with pytest.raises(OSError, match="no times today"):
        storage.write("x", b"new")
    assert storage.read("x")[0] == b"old"
    assert [n for n in os.listdir(tmp_path) if ".tmp." in n] == []


def test_generations_of_a_missing_root_never_look_elsewhere(tmp_path, monkeypatch):
    (tmp_path / "x").write_bytes(b"in the working directory")
    monkeypatch.chdir(tmp_path)
    assert LocalStorage(tmp_path / "missing").generations(["x"]) == {"x": None}


def test_every_visible_file_of_a_folder_is_listed(tmp_path):
    storage = LocalStorage(tmp_path)
    names = [f"f{i:02d}" for i in range(30)]
    for name in names:
        storage.write(f"d/{name}", b"1")
    for hidden in (".a", ".m", ".z"):
        (tmp_path / "d" / hidden).write_bytes(b"h")
    assert [o.name for o in storage.list("d/")] == [f"d/{n}" for n in names]
    assert [o.name for o in storage.list("d/f1")] == [f"d/f1{i}" for i in range(10)]
    assert [o.name for o in storage.list(glob="d/f?5")] == ["d/f05", "d/f15", "d/f25"]


def test_a_file_deleted_while_listing_is_skipped(tmp_path, monkeypatch):
    storage = LocalStorage(tmp_path)
    for name in ("a", "b", "c"):
        storage.write(f"d/{name}", b"1")
    real_stat = os.stat
    gone = str(tmp_path / "d" / "b")

    def stat(path, *args, **kwargs):
        if str(path) == gone:
            raise FileNotFoundError(path)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(local_mod.os, "stat", stat)
    assert [o.name for o in storage.list()] == ["d/a", "d/c"]


def test_listing_below_folders_with_spaces(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write("a b/c d/x", b"1")
    assert [o.name for o in storage.list("a b/c d/")] == ["a b/c d/x"]
    assert [o.name for o in storage.list("a b/c d/x")] == ["a b/c d/x"]


def test_root_and_dot_prefixes_list_everything(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write("a/x", b"1")
    everything = storage.list()
    assert storage.list("/") == everything == storage.list(".")
    assert storage.child("a").list("/") == [ObjectInfo("x", everything[0].generation)]


def test_nested_braces_are_a_configuration_error():
    from proxy_task_utils.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="nested or unbalanced braces"):
        compile_glob("{{a}")


def test_uris_ending_in_x_keep_their_x(tmp_path):
    root = tmp_path / "rootX"
    assert LocalStorage(root).child_uri("a") == f"{root}/a"
    assert split_uri(f"{root}/bX") == (str(root), "bX")
    assert join_uri(str(root), "a") == f"{root}/a"


def test_child_uri_of_a_root_with_a_trailing_slash(tmp_path):
    class Slashed(LocalStorage):
        @property
        def uri(self) -> str:
            return self.root + "/"

    assert Slashed(tmp_path).child_uri("a", "b") == f"{tmp_path}/a/b"


def test_glob_below_a_folder_with_a_star_lists_only_that_folder(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write("a*/1/m.json", b"mine")
    storage.write("ab/1/m.json", b"a sibling the parent's wider glob also matches")
    child = storage.child("a*")
    assert isinstance(child, _SubStorage)
    assert [o.name for o in child.list(glob="*/m.json")] == ["1/m.json"]
    assert child.list(glob="*/m.json")[0].generation == storage.read("a*/1/m.json")[1]


def test_compare_and_swap_fsyncs_the_data_and_the_folder(tmp_path, monkeypatch):
    storage = LocalStorage(tmp_path)
    gen = storage.write("x", b"1")
    synced = []
    real = os.fsync
    monkeypatch.setattr(local_mod.os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    storage.write_if_generation("x", b"2", gen)
    assert len(synced) == 2  # the temp file, then its folder

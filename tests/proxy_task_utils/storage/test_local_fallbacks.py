"""Code paths the contract suite does not reach on a normal local disk.

* ``Storage.generations`` and ``_SubStorage.generations`` by listing (what a backend without
  cheap ``stat`` uses, GCS among them): run here on a real folder that only lists.
* ``write_if_absent`` on a file system without hard links (the ``O_EXCL`` fallback).
* Listing details: hidden folders, prefixes cut inside a name, glob depth.
"""

from __future__ import annotations

import errno
import os

import pytest

from proxy_task_utils.errors import PreconditionFailedError, StorageError, UnsafePathError
from proxy_task_utils.storage import LocalStorage, ObjectInfo, Storage


class ListingOnly(LocalStorage):
    """A real folder that answers ``generations`` the way a listing backend does."""

    cheap_stat = False

    def generations(self, names):
        return Storage.generations(self, names)


def test_generations_by_listing(tmp_path):
    storage = ListingOnly(tmp_path)
    a = storage.write("1/m.json", b"m")
    b = storage.write("top", b"t")
    got = storage.generations(["1/m.json", "./1/m.json", "top", "missing", "1"])
    assert got == {"1/m.json": a, "./1/m.json": a, "top": b, "missing": None, "1": None}
    with pytest.raises(UnsafePathError):
        storage.generations(["../x"])
    assert storage.generations([]) == {}


def test_sub_storage_generations_list_only_the_sub_folder(tmp_path):
    storage = ListingOnly(tmp_path)
    gen = storage.write("trial/1/m.json", b"m")
    storage.write("trial/2/m.json", b"other")
    listed = []
    real_list = LocalStorage.list

    def spy(self, prefix="", *, glob=None):
        listed.append(prefix)
        return real_list(self, prefix, glob=glob)

    ListingOnly.list = spy  # type: ignore[method-assign]
    try:
        child = storage.child("trial", "1")
        assert child.generations(["m.json", "x"]) == {"m.json": gen, "x": None}
    finally:
        del ListingOnly.list
    assert listed == ["trial/1/"]


def test_sub_storage_with_a_cheap_parent_stats_names(tmp_path):
    storage = LocalStorage(tmp_path)
    gen = storage.write("t/a", b"a")
    before = storage.request_count
    assert storage.child("t").generations(["a", "b"]) == {"a": gen, "b": None}
    assert storage.request_count - before == 1


def test_sub_storage_write_passes_durable_only_when_asked(tmp_path):
    calls = []

    class Recording(LocalStorage):
        def write(self, name, data, **kwargs):
            calls.append(kwargs)
            return super().write(name, data, **kwargs)

    child = Recording(tmp_path).child("c")
    child.write("x", b"1")
    child.write("y", b"2", durable=False)
    assert calls == [{}, {"durable": False}]
    assert Recording(tmp_path).read("c/y")[0] == b"2"


def test_sub_storage_lists_carry_generations(tmp_path):
    storage = LocalStorage(tmp_path)
    gen = storage.write("c/d/x.json", b"1")
    child = storage.child("c")
    assert child.list() == [ObjectInfo("d/x.json", gen)]
    assert child.list(glob="d/*.json") == [ObjectInfo("d/x.json", gen)]
    assert child.list("d/", glob="*/x.json") == [ObjectInfo("d/x.json", gen)]
    assert child.child("d").list() == [ObjectInfo("x.json", gen)]


def test_sub_storage_exists(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write("c/x", b"1")
    assert storage.child("c").exists("x") and not storage.child("c").exists("y")


def test_base_exists_reads(tmp_path):
    storage = ListingOnly(tmp_path)
    storage.write("x", b"1")
    assert Storage.exists(storage, "x") is True
    assert Storage.exists(storage, "y") is False


def _no_hard_links(monkeypatch, code=errno.EPERM):
    def link(src, dst):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "link", link)


@pytest.mark.parametrize("code", [errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP])
def test_create_only_without_hard_links(tmp_path, monkeypatch, code):
    storage = LocalStorage(tmp_path)
    _no_hard_links(monkeypatch, code)
    gen = storage.write_if_absent("a/x", b"first")
    assert storage.read("a/x") == (b"first", gen)
    with pytest.raises(PreconditionFailedError) as info:
        storage.write_if_absent("a/x", b"second")
    assert str(info.value) == f"{tmp_path / 'a' / 'x'} already exists"
    assert info.value.uri == str(tmp_path / "a" / "x")
    assert storage.read("a/x")[0] == b"first"
    assert not [n for n in os.listdir(tmp_path / "a") if ".tmp." in n]


def test_create_only_on_another_os_error_is_a_storage_error(tmp_path, monkeypatch):
    storage = LocalStorage(tmp_path)
    _no_hard_links(monkeypatch, errno.EIO)
    with pytest.raises(StorageError) as info:
        storage.write_if_absent("x", b"1")
    assert str(info.value).startswith(f"cannot create {tmp_path / 'x'}: ")
    assert info.value.uri == str(tmp_path / "x")
    assert not storage.exists("x")


def test_create_only_returns_the_new_objects_generation(tmp_path):
    storage = LocalStorage(tmp_path)
    gen = storage.write_if_absent("x", b"1")
    assert storage.read("x")[1] == gen
    assert storage.write_if_generation("x", b"2", gen) > gen


def test_listing_skips_hidden_folders_and_cuts_prefixes_inside_names(tmp_path):
    storage = LocalStorage(tmp_path)
    for name in ["a/b/c", "a/bc", "ab/x", ".hidden/y", "a/.h/z"]:
        os.makedirs(os.path.dirname(tmp_path / name), exist_ok=True)
        (tmp_path / name).write_bytes(b"1")
    assert [o.name for o in storage.list()] == ["a/b/c", "a/bc", "ab/x"]
    assert [o.name for o in storage.list("a/b")] == ["a/b/c", "a/bc"]
    assert [o.name for o in storage.list("a/b/")] == ["a/b/c"]
    assert [o.name for o in storage.list("a/b/c")] == ["a/b/c"]
    assert [o.name for o in storage.list("ab")] == ["ab/x"]
    assert storage.list("a/b/c/d") == []


def test_glob_listing_stops_at_the_glob_depth(tmp_path):
    storage = LocalStorage(tmp_path)
    for name in ["1/m", "1/2/m", "1/2/3/m", "x"]:
        storage.write(name, b"1")
    assert [o.name for o in storage.list(glob="*/m")] == ["1/m"]
    assert [o.name for o in storage.list(glob="*/*/m")] == ["1/2/m"]
    assert [o.name for o in storage.list(glob="*")] == ["x"]
    assert [o.name for o in storage.list(glob="1/{2,9}/*")] == ["1/2/m"]


def test_listing_a_missing_root_or_a_file_prefix(tmp_path):
    assert LocalStorage(tmp_path / "nothing").list() == []
    storage = LocalStorage(tmp_path)
    storage.write("f", b"1")
    assert [o.name for o in storage.list("f/")] == []
    assert LocalStorage(tmp_path / "nothing").generations(["a"]) == {"a": None}


def test_generations_of_names_needing_normalisation(tmp_path):
    storage = LocalStorage(tmp_path)
    gen = storage.write("a/b", b"1")
    assert storage.generations(["a//b", "a/./b", "a/b/"]) == {"a//b": gen, "a/./b": gen, "a/b/": gen}
    assert storage.generations(["a/b/c"]) == {"a/b/c": None}  # below a file

"""Storage names without I/O: URIs, the scheme registry, safe names and the shared glob subset."""

from __future__ import annotations

import os

import pytest

from proxy_task_utils import storage as st
from proxy_task_utils.errors import ConfigurationError, MissingExtraError, UnsafePathError
from proxy_task_utils.storage import LocalStorage, join_uri, normalize_uri, open_storage, split_uri
from proxy_task_utils.storage.base import compile_glob, glob_literal_prefix, safe_join


def test_normalize_uri():
    assert normalize_uri("/gcs/bucket/x/y") == "gs://bucket/x/y"
    assert normalize_uri("gs://bucket/x") == "gs://bucket/x"
    assert normalize_uri("mem://a/b") == "mem://a/b"
    assert normalize_uri("rel/dir") == os.path.join(os.getcwd(), "rel", "dir")
    assert normalize_uri("/a/b/") == "/a/b"
    with pytest.raises(ConfigurationError) as info:
        normalize_uri("")
    assert str(info.value) == "storage location is empty; give a folder or a gs://bucket/path"


def test_split_uri():
    assert split_uri("gs://b/job/7") == ("gs://b/job", "7")
    assert split_uri("gs://b/job/7/") == ("gs://b/job", "7")
    assert split_uri("/gcs/b/job/7") == ("gs://b/job", "7")
    assert split_uri("/top") == ("/", "top")
    assert split_uri("/a/b//") == ("/a", "b")
    with pytest.raises(ConfigurationError) as info:
        split_uri("gs://bucket/")
    assert str(info.value) == "'gs://bucket/' names a bucket, not a folder inside it"
    with pytest.raises(ConfigurationError, match="names a bucket"):
        split_uri("/gcs/bucket")
    with pytest.raises(ConfigurationError) as info:
        split_uri("/")
    assert str(info.value) == "'/' has no last path component"


def test_join_uri():
    assert join_uri("gs://b/job/", "7", "m.json") == "gs://b/job/7/m.json"
    assert join_uri("/gcs/b/job", "./7") == "gs://b/job/7"
    assert join_uri("/a", "b/c") == "/a/b/c"
    with pytest.raises(UnsafePathError):
        join_uri("/a", "../b")


def test_registry_dispatches_by_scheme_and_names_the_known_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(st, "_REGISTRY", dict(st._REGISTRY))
    opened = []

    def factory(uri):
        opened.append(uri)
        return LocalStorage(tmp_path)

    st.register_scheme("mem", factory)
    assert open_storage("mem://x/y").uri == str(tmp_path)
    assert opened == ["mem://x/y"]
    with pytest.raises(ConfigurationError) as info:
        open_storage("s3://bucket/a://b")
    assert str(info.value) == (
        "unknown storage scheme 's3' in 's3://bucket/a://b'; known: ['gs', 'mem'] or a local path"
    )
    local = open_storage(str(tmp_path / "f"))
    assert type(local) is LocalStorage and local.uri == str(tmp_path / "f")


def test_the_gs_scheme_is_registered_and_a_missing_extra_names_the_pip_install(monkeypatch):
    import builtins

    assert "gs" in st._REGISTRY
    real_import = builtins.__import__

    def no_gcs(name, *args, **kwargs):
        if name == "proxy_task_utils.storage.gcs":
            raise ImportError("No module named 'google.cloud.storage'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gcs)
    with pytest.raises(MissingExtraError) as info:
        open_storage("gs://bucket/p")
    assert str(info.value) == (
        "gs://bucket/p needs google-cloud-storage, which is not installed: pip install 'proxy-task-utils[gcs]' "
        "(No module named 'google.cloud.storage')"
    )
    assert isinstance(info.value, ImportError)


@pytest.mark.parametrize(
    ("parts", "name"),
    [(("a", "b"), "a/b"), (("a/./b/", "c"), "a/b/c"), (("./a//b",), "a/b"), (("a.b", "..c"), "a.b/..c")],
)
def test_safe_join(parts, name):
    assert safe_join(*parts) == name


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ((1,), "path part must be a string, but got 1"),
        (("a\x00",), "path part contains a NUL byte: 'a\\x00'"),
        (("a\\b",), "path part contains a backslash: 'a\\\\b'; use '/'"),
        (("/a",), "path part '/a' is absolute; names inside a storage root must be relative"),
        (("a/../b",), "path part 'a/../b' contains '..' and would leave the storage root"),
        (("", "."), "empty object name from parts ('', '.')"),
    ],
)
def test_safe_join_refusals(parts, message):
    with pytest.raises(UnsafePathError) as info:
        safe_join(*parts)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("glob", "matches", "misses"),
    [
        ("*/m.json", ["1/m.json", "x/m.json"], ["1/2/m.json", "m.json"]),
        ("t?/a", ["tz/a"], ["t/a", "tzz/a", "t//a"]),
        ("{a,bc}.json", ["a.json", "bc.json"], ["b.json", "{a,bc}.json", "a,bc.json"]),
        ("x,y", ["x,y"], ["x"]),  # a comma outside braces is literal
        ("a.b+c", ["a.b+c"], ["aXb+c", "a.bbc"]),  # regex characters are literal
        ("{a,b}/{c,d}", ["a/c", "b/d"], ["a/b"]),
    ],
)
def test_compile_glob_matches(glob, matches, misses):
    pattern = compile_glob(glob)
    for name in matches:
        assert pattern.fullmatch(name), name
    for name in misses:
        assert not pattern.fullmatch(name), name


@pytest.mark.parametrize(
    ("glob", "message"),
    [
        ("", "glob must be a relative pattern such as '*/file.json', but got ''"),
        ("/a", "glob must be a relative pattern such as '*/file.json', but got '/a'"),
        ("a/", "glob must be a relative pattern such as '*/file.json', but got 'a/'"),
        ("**/m", "glob '**/m' contains '**'; use one '*' per folder level"),
        ("a[1]", "glob 'a[1]' contains '['; use '{a,b}'"),
        ("a]", "glob 'a]' contains ']'; use '{a,b}'"),
        ("a\\b", "glob 'a\\\\b' contains '\\\\'; use '/'"),
        ("a//b", "glob 'a//b' contains '//'; use one '/'"),
        ("a\x00", "glob 'a\\x00' contains '\\x00'; use no NUL byte"),
        ("{a/b}", "glob '{a/b}' has '/' inside braces; use one pattern per folder level"),
        ("{a,{b}}", "glob '{a,{b}}' has nested or unbalanced braces"),
        ("a}", "glob 'a}' has nested or unbalanced braces"),
        ("{a", "glob '{a' has an unclosed '{'"),
    ],
)
def test_compile_glob_refusals(glob, message):
    with pytest.raises(ConfigurationError) as info:
        compile_glob(glob)
    assert str(info.value) == message


def test_compile_glob_refuses_non_strings():
    with pytest.raises(ConfigurationError, match="relative pattern"):
        compile_glob(None)  # type: ignore[arg-type]


def test_two_brace_groups_in_a_row():
    pattern = compile_glob("{a,b}{c,d}")
    assert pattern.fullmatch("ad") and not pattern.fullmatch("a")


def test_glob_literal_prefix():
    assert glob_literal_prefix("job/trial") == "job/trial/"
    assert glob_literal_prefix("job/odd{1,2}*/x?") == "job/*/*/"
    assert glob_literal_prefix("a//b/") == "a/b/"
    assert glob_literal_prefix("") == ""

"""Lost answers and 503s through the fault proxy in front of the real fake GCS server."""

from __future__ import annotations

import pytest

from controllers.testing.fault_proxy import FaultProxy
from proxy_task_utils.errors import PreconditionFailedError
from proxy_task_utils.storage.gcs import GCSStorage


@pytest.fixture
def proxied(fake_gcs, monkeypatch):
    with FaultProxy(fake_gcs.endpoint) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.endpoint)
        yield proxy, GCSStorage(fake_gcs.bucket, "ctl", retry_timeout=30)


def test_a_create_only_write_whose_answer_is_lost_is_our_success(proxied):
    proxy, storage = proxied
    proxy.drop_next()
    generation = storage.write_if_absent("claim.json", b'{"token": "ours"}')
    assert proxy.counts["dropped"] == 1
    assert storage.read("claim.json") == (b'{"token": "ours"}', generation)


def test_a_compare_and_swap_whose_answer_is_lost_is_our_success(proxied):
    proxy, storage = proxied
    g1 = storage.write_if_absent("lease", b"one")
    proxy.drop_next()
    g2 = storage.write_if_generation("lease", b"two", g1)
    assert proxy.counts["dropped"] == 1 and g2 != g1
    assert storage.read("lease") == (b"two", g2)


def test_a_real_conflict_still_fails_after_a_lost_answer(proxied):
    proxy, storage = proxied
    storage.write_if_absent("claim.json", b"theirs")
    with pytest.raises(PreconditionFailedError):
        storage.write_if_absent("claim.json", b"ours")  # first attempt answered: a real conflict
    proxy.drop_next()
    with pytest.raises(PreconditionFailedError):
        storage.write_if_absent("claim.json", b"ours")  # retried, but the bytes are not ours
    assert storage.read("claim.json")[0] == b"theirs"


def test_503s_are_retried_and_counted(proxied):
    proxy, storage = proxied
    proxy.fail_next(lambda method, path: True, n=2)
    storage.write("a.json", b"{}")
    assert storage.read("a.json")[0] == b"{}" and proxy.counts["errors"] == 2

"""JobMonitor: one listing per poll, re-reads only what changed, keeps the last good record."""

from __future__ import annotations

from controllers.engine.monitor import JobMonitor
from proxy_task_utils import protocol as p
from proxy_task_utils.storage import LocalStorage


def _metrics(*accs: float) -> bytes:
    m = p.TrialTrainingMetrics()
    for i, a in enumerate(accs):
        m.training_accuracy_over_steps.append(p.AccuracyAtStep(10.0 * (i + 1), 10 * (i + 1) - 1, a))
    return m.to_json()


def test_poll_reads_only_changed_files(tmp_path):
    storage = LocalStorage(tmp_path)
    for t in ("1", "2", "3"):
        storage.write(f"{t}/{p.TRIAL_TRAINING_METRICS_FILE}", _metrics(0.1))
    storage.write("3/other_file.json", b"{}")
    monitor = JobMonitor(storage, ["1", "2", "3", "4"])
    before = storage.request_count
    snaps = monitor.poll()
    assert storage.request_count - before == 1 + 3  # one listing + three metrics files
    assert [snaps[t].metrics.final_accuracy for t in ("1", "2", "3")] == [0.1, 0.1, 0.1]
    assert snaps["4"].metrics is None
    before = storage.request_count
    monitor.poll()
    assert storage.request_count - before == 1  # nothing changed: the listing only
    storage.write(f"2/{p.TRIAL_TRAINING_METRICS_FILE}", _metrics(0.1, 0.2))
    storage.write(f"1/{p.JOB_STATUS_FILE}", p.encode_job_status("success"))
    before = storage.request_count
    snaps = monitor.poll()
    assert storage.request_count - before == 3
    assert snaps["2"].changed and not snaps["1"].changed
    assert snaps["2"].metrics.final_accuracy == 0.2
    assert snaps["1"].job_status == "success"
    assert monitor.reads == 1 + 3 + 1 + 3


def test_corrupt_file_keeps_last_good_record_and_is_reported_once(tmp_path):
    storage = LocalStorage(tmp_path)
    name = f"1/{p.TRIAL_TRAINING_METRICS_FILE}"
    storage.write(name, _metrics(0.3, 0.4))
    monitor = JobMonitor(storage, ["1"])
    monitor.poll()
    storage.write(name, b'{"training_time": {"total_tr')  # torn write
    snap = monitor.poll()["1"]
    assert snap.metrics is not None and snap.metrics.final_accuracy == 0.4
    assert len(snap.errors) == 1 and "keeping the last good record" in snap.errors[0]
    monitor.poll()
    assert len(snap.errors) == 1  # same generation: not re-read, not re-reported
    storage.write(name, _metrics(0.3, 0.4, 0.5))
    assert monitor.poll()["1"].metrics.final_accuracy == 0.5


def test_post_signals_writes_zero_and_heartbeat(tmp_path):
    storage = LocalStorage(tmp_path)
    monitor = JobMonitor(storage, ["1", "2"])
    monitor.post_signals(["1", "2"], desired_training_pct=0.0, max_training_time_in_hrs=1.5)
    data, _ = storage.read(f"1/{p.DESIRED_TRAINING_PCT_FILE}")
    assert p.decode_desired_training_pct(data) == 0.0
    data, _ = storage.read(f"2/{p.MAX_TRAINING_TIME_FILE}")
    assert p.decode_max_training_time(data) == 1.5
    monitor.post_signals(["3"], desired_training_pct=None)
    assert storage.list("3") == []  # None posts nothing
    assert monitor.write_heartbeat(["1", "2"], 123.0) == 2
    gen1 = storage.generations(["1/" + p.CONTROLLER_ALIVE_TIMESTAMP_FILE])
    monitor.write_heartbeat(["1"], 124.0)
    assert storage.generations(["1/" + p.CONTROLLER_ALIVE_TIMESTAMP_FILE]) != gen1


def _o_changed_case(storage):
    """200 trial folders, 3 of them change: one look + 3 reads, whatever the backend."""
    from concurrent.futures import ThreadPoolExecutor

    ids = [str(i) for i in range(1, 201)]

    def prewrite(t):
        storage.write(f"{t}/{p.TRIAL_TRAINING_METRICS_FILE}", _metrics(0.1))
        storage.write(f"{t}/{p.NAS_PARAMS_STR_FILE}", b"{}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(prewrite, ids))
    monitor = JobMonitor(storage, ids)
    monitor.poll()
    assert monitor.reads == 1 + 200
    for t in ("7", "99", "200"):
        storage.write(f"{t}/{p.TRIAL_TRAINING_METRICS_FILE}", _metrics(0.1, 0.2))
    before_requests, before_reads = storage.request_count, monitor.reads
    snaps = monitor.poll(ids)
    assert monitor.reads - before_reads == 1 + 3
    assert storage.request_count - before_requests == 1 + 3  # not one per trial
    assert sorted(t for t, s in snaps.items() if s.changed) == ["200", "7", "99"]
    assert snaps["99"].metrics.final_accuracy == 0.2
    before = storage.request_count
    monitor.poll(["5", "6"])  # the job loop asks about live trials only
    assert storage.request_count - before == 1
    assert not any(s.changed for s in snaps.values())


def test_poll_of_200_trials_with_3_changed_costs_4_requests_local(tmp_path):
    _o_changed_case(LocalStorage(tmp_path, fsync=False))


def test_poll_of_200_trials_with_3_changed_costs_4_requests_gcs(fake_gcs):
    _o_changed_case(fake_gcs.storage("job", "nas", "search"))


def test_heartbeats_skip_fsync_and_signals_do_not(tmp_path, monkeypatch):
    import os

    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    storage = LocalStorage(tmp_path)  # fsync on, as in production
    monitor = JobMonitor(storage, ["1", "2"])
    assert monitor.write_heartbeat(["1", "2"], 123.0) == 2
    assert synced == []  # a liveness file must be atomic, not durable
    data, _ = storage.read(f"2/{p.CONTROLLER_ALIVE_TIMESTAMP_FILE}")
    assert data == p.encode_controller_alive_timestamp(123.0)
    monitor.post_signals(["1"], desired_training_pct=0.0)
    assert len(synced) == 2  # a stop signal is durable: the file and its folder


def test_gcs_look_lists_only_the_watched_files(fake_gcs, monkeypatch):
    from proxy_task_utils.storage import gcs as _gcs

    storage = fake_gcs.storage("job", "nas", "search")
    storage.write(f"1/{p.TRIAL_TRAINING_METRICS_FILE}", _metrics(0.1))
    storage.write("1/checkpoints/ckpt-1.index", b"x")
    storage.write(f"2/{p.JOB_STATUS_FILE}", p.encode_job_status("success"))
    storage.write("3/x/" + p.TRIAL_TRAINING_METRICS_FILE, _metrics(0.9))  # not a trial's own file
    globs: list[object] = []
    real = _gcs.gcs.Client.list_blobs

    def spy(self, *args, **kwargs):
        globs.append(kwargs.get("match_glob"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(_gcs.gcs.Client, "list_blobs", spy)
    snaps = JobMonitor(storage, ["1", "2", "3"]).poll()
    assert globs == [f"job/nas/search/*/{{{p.TRIAL_TRAINING_METRICS_FILE},{p.JOB_STATUS_FILE}}}"]
    assert snaps["1"].metrics.final_accuracy == 0.1
    assert snaps["2"].job_status == "success"
    assert snaps["3"].metrics is None

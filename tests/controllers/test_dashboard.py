"""``proxy-task dashboard``: the snapshot of a real search folder, the server's routes, and the page as
headless Chromium renders it, on a finished and on a running search (started with ``--dashboard``)."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from _small_search import NOISY, read_state, run_small_search, search_config, write_config

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("plotly")

from controllers.dashboard import SnapshotReader, snapshot, start_dashboard  # noqa: E402
from proxy_task_utils import protocol  # noqa: E402
from proxy_task_utils.storage import open_storage  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> str:
    return run_small_search(tmp_path_factory.mktemp("finished"))


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium; .ci/run does): cannot render"
)


def _render(url: str, tmp_path: Path, *, screenshot: str | None = None) -> str:
    """The page's DOM after its scripts ran (headless Chromium, fresh profile, no network beyond the URL)."""
    assert CHROMIUM is not None
    profile = tmp_path / f"chromium-profile-{time.monotonic_ns()}"
    argv = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
        "--virtual-time-budget=10000", "--window-size=1280,1400",
    ]  # fmt: skip
    argv += [f"--screenshot={screenshot}", "--hide-scrollbars"] if screenshot else ["--dump-dom"]
    done = subprocess.run([*argv, url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _cells(dom: str, table_id: str) -> list[list[str]]:
    body = dom.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body.split("<tbody>", 1)[1], flags=re.S)
    return [
        [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)]
        for r in rows
    ]


def _latest(entry: dict, method: str = "spearman") -> tuple[int, dict]:
    steps = entry["proxy_task_stats"]["training_steps"]
    rows = entry["correlation_over_step"][method]
    i = max(k for k, r in enumerate(rows) if r["coefficient"] is not None)
    return steps[i], rows[i]


def _kill_trials(controller_dir: Path) -> None:
    path = controller_dir / "SEARCH_CONTROLLER_STATE.json"
    if not path.exists():
        return
    for entry in json.loads(path.read_text())["proxy_tasks_map"].values():
        for t in (entry.get("job") or {}).get("trials", []):
            pgid = (t.get("handle") or {}).get("pgid")
            if isinstance(pgid, int) and pgid > 1:
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


# -- the snapshot ---------------------------------------------------------------------------------


def test_snapshot_of_a_finished_search_matches_its_state_and_trial_files(finished):
    snap = snapshot(finished)
    state = read_state(finished)
    json.dumps(snap, allow_nan=False)  # standard JSON
    assert snap["kind"] == "search" and snap["found"]
    assert [s["name"] for s in snap["stages"]] == ["search"] and snap["stages"][0]["state"] == "done"
    search = snap["search"]
    assert [p["name"] for p in search["proxies"]] == ["noisy", "good"]
    assert search["best"] == state["best_proxy_task_name"] == "good" and search["target"] == 0.9
    for p in search["proxies"]:
        step, row = _latest(state["proxy_tasks_map"][p["name"]])
        assert p["latest"]["step"] == step and p["latest"]["coefficient"] == row["coefficient"]
        assert p["latest"]["ci_low"] == row["ci_low"] and set(p["series"]) == {"spearman", "kendall"}
    assert any(d["proxy"] == "good" and d["state"] == "Met desired correlation" for d in search["decision_log"])
    # the trials table: one row per trial, last point from the trial's own metrics file
    assert len(snap["trials"]) == 16
    row = next(t for t in snap["trials"] if t["job"] == "proxy good" and t["trial_id"] == "3")
    job_dir = state["proxy_tasks_map"]["good"]["search_job_link"]
    data, _ = open_storage(job_dir).child("3").read(protocol.TRIAL_TRAINING_METRICS_FILE)
    last = protocol.TrialTrainingMetrics.from_json(data).training_accuracy_over_steps[-1]
    assert (row["state"], row["last_step"], row["last_accuracy"]) == ("succeeded", last.training_step, last.accuracy)


def test_snapshot_of_a_pipeline_folder_and_of_an_empty_one(finished, tmp_path):
    pipeline = snapshot(os.path.dirname(finished))  # <tmp>/search beside <tmp>/reference: a pipeline's layout
    assert pipeline["kind"] == "pipeline"
    assert [(s["name"], s["state"]) for s in pipeline["stages"]] == [
        ("variance", "pending"), ("model_selection", "pending"), ("search", "done")]  # fmt: skip
    empty = snapshot(str(tmp_path))
    assert empty["found"] is False and empty["search"] is None and empty["trials"] == []


def test_running_stage_elapsed_and_eta_from_the_trials_done():
    from controllers.dashboard.snapshot import stage_view

    def trial(state, started):
        return {"trial_id": "1", "state": state, "handle": {"started_at": started}}

    job = {"job_dir": "/x", "trials": [trial("succeeded", 100.0), trial("succeeded", 110.0), trial("running", 150.0)]}
    state = {"proxy_tasks_map": {"a": {"job": job}, "b": {}}, "reference": {"trial_ids": ["1", "2", "3"]}}
    view = stage_view("search", state, now=200.0)
    assert view["state"] == "running" and view["trials"] == {"succeeded": 2, "running": 1}
    assert view["planned_trials"] == 6 and view["elapsed_secs"] == 100.0
    assert view["eta_secs"] == pytest.approx(100.0 * 4 / 2)
    assert stage_view("search", {**state, "finished": True}, now=200.0)["eta_secs"] is None
    plan = {"start_num_models": 30, "final_num_models": 10, "num_models_to_remove_per_iter": 5}
    assert stage_view("model_selection", plan, now=0.0)["planned_trials"] == 30 + 25 + 20 + 15 + 10
    assert stage_view("variance", None, now=0.0)["state"] == "pending"


# -- the server -----------------------------------------------------------------------------------


def test_server_serves_the_page_plotly_offline_and_the_snapshot(finished):
    server = start_dashboard(finished, refresh_secs=2)
    try:
        status, page = _get(server.url)
        assert status == 200 and b"/static/plotly.min.js" in page
        assert not re.search(rb'src="https?://', page)  # no CDN
        status, js = _get(server.url + "static/plotly.min.js")
        assert status == 200 and len(js) > 1_000_000 and b"plotly" in js[:2000].lower()
        assert _get(server.url + "static/app.py")[0] == 404
        status, body = _get(server.url + "api/snapshot")
        snap = json.loads(body)
        assert status == 200 and snap["refresh_secs"] == 2 and snap["search"]["best"] == "good"
    finally:
        server.stop()


def test_a_corrupt_state_is_shown_not_crashed(tmp_path):
    (tmp_path / "SEARCH_CONTROLLER_STATE.json").write_text("{not json")
    server = start_dashboard(str(tmp_path))
    try:
        status, body = _get(server.url + "api/snapshot")
        assert status == 200 and "SEARCH_CONTROLLER_STATE.json" in json.loads(body)["error"]
    finally:
        server.stop()


def test_reader_reads_the_trial_files_of_finished_jobs_once(finished, tmp_path):
    copy = tmp_path / "search"
    shutil.copytree(finished, copy)
    state_file = copy / "SEARCH_CONTROLLER_STATE.json"
    state_file.write_text(state_file.read_text().replace(finished, str(copy)))
    reader = SnapshotReader(open_storage(str(copy)))
    first = reader.read()["trials"]
    state = read_state(str(copy))
    os.remove(
        os.path.join(state["proxy_tasks_map"]["good"]["search_job_link"], "1", protocol.TRIAL_TRAINING_METRICS_FILE)
    )
    assert reader.read()["trials"] == first  # a finished trial's record no longer changes: not read again
    fresh = SnapshotReader(open_storage(str(copy))).read()["trials"]
    gone = next(t for t in fresh if t["job"] == "proxy good" and t["trial_id"] == "1")
    assert gone["last_step"] is None and gone["last_accuracy"] is None


# -- the page in a browser ------------------------------------------------------------------------


@needs_chromium
def test_browser_renders_a_finished_search(finished, tmp_path):
    state = read_state(finished)
    server = start_dashboard(finished)
    try:
        dom = _render(server.url, tmp_path)
    finally:
        server.stop()
    assert 'data-rendered="' in dom  # the script ran and drew at least once
    for name, entry in state["proxy_tasks_map"].items():
        assert f'data-proxy="{name}"' in dom
        step, row = _latest(entry)
        assert f"spearman {row['coefficient']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}] at step {step}" in dom
    assert dom.count('class="main-svg"') >= 4  # plotly drew two charts per proxy
    trials = _cells(dom, "trials")
    assert len(trials) == 16 and {r[2] for r in trials} == {"succeeded"}
    assert {r[0] for r in trials} == {"proxy noisy", "proxy good"}
    log = _cells(dom, "decision-log")
    assert any(r[0] == "good" and r[2] == "Met desired correlation" and r[3] for r in log)


@needs_chromium
def test_browser_follows_a_running_search_started_with_dashboard(tmp_path):
    # noisy, long and slow: it never reaches the target, so it is still running when the page is read
    slow = {**NOISY, "train_steps": 2000, "sleep_per_cycle": 0.4}
    data = search_config(tmp_path, [("slow", slow), ("next", NOISY)], desired_accuracy_correlation=1.0)
    config = write_config(tmp_path, data)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "controllers.cli", "search", config, "--no-progress", "--dashboard"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert match, line
        url = match.group(1)
        state_path = tmp_path / "search" / "SEARCH_CONTROLLER_STATE.json"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if state_path.exists():
                entry = json.loads(state_path.read_text())["proxy_tasks_map"].get("slow", {})
                rows = entry.get("correlation_over_step", {}).get("spearman", [])
                if entry.get("status") == "running" and sum(r["coefficient"] is not None for r in rows) >= 2:
                    break
            time.sleep(0.3)
        else:
            pytest.fail("the search never recorded two correlations")
        dom = _render(url, tmp_path)
        assert proc.poll() is None, "the search ended before the page was read"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _kill_trials(tmp_path / "search")  # an interrupted controller leaves its trials for --resume
    assert 'data-proxy="slow"' in dom and "running: no stopping rule has fired yet" in dom
    assert re.search(r"latest: <span class=\"latest\">spearman -?\d\.\d{3} \[", dom)
    stage = re.search(r'data-stage="search".*?class="badge (\w+)"', dom, re.S)
    assert stage and stage.group(1) == "running"
    trials = _cells(dom, "trials")
    assert len(trials) >= 8 and "running" in {r[2] for r in trials}
    assert any(r[3] not in ("", "–") for r in trials)  # last steps read from the running trials' files


def test_snapshot_of_a_folder_on_gcs(finished, fake_gcs):
    root = fake_gcs.uri + "/search"
    storage = open_storage(root)
    for dirpath, _, files in os.walk(finished):
        for name in files:
            if name.endswith(".json"):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, finished)
                data = Path(path).read_bytes().replace(finished.encode(), root.encode())
                storage.write(rel, data)
    snap = snapshot(root)
    local = snapshot(finished)
    assert snap["uri"] == root and snap["search"]["proxies"] == local["search"]["proxies"]
    assert [(t["job"], t["trial_id"], t["last_step"], t["last_accuracy"]) for t in snap["trials"]] == [
        (t["job"], t["trial_id"], t["last_step"], t["last_accuracy"]) for t in local["trials"]
    ]
    assert all(t["last_step"] is not None for t in snap["trials"])


def test_exported_names_resolve():
    import controllers.dashboard as dashboard

    assert sorted(dashboard.__all__) == sorted(
        ["DashboardServer", "SnapshotReader", "create_app", "serve", "snapshot", "start_dashboard"]
    )
    for name in dashboard.__all__:
        assert getattr(dashboard, name) is not None


def test_importing_the_dashboard_package_stays_light():
    code = "import sys, controllers.dashboard; print(sorted(m for m in ('starlette', 'uvicorn', 'plotly') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr

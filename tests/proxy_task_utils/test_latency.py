"""Trainer side of the latency handshake: export, manifest, wait, load (real files, real models)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from proxy_task_utils import protocol as p
from proxy_task_utils.errors import ConfigurationError, ProtocolError, UnsafePathError
from proxy_task_utils.latency import (
    EXPORT_MANIFEST_FILE,
    LATENCY_ERROR_FILE,
    ExportManifest,
    InputSpec,
    LatencyError,
    LatencyTimeoutError,
    export_for_latency,
    load_exported,
    wait_for_latency,
)
from proxy_task_utils.storage import LocalStorage

torch = pytest.importorskip("torch")


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


class RecordingStorage(LocalStorage):
    """A real local folder that remembers the order of writes."""

    def __init__(self, root: str) -> None:
        super().__init__(root, fsync=False)
        self.written: list[str] = []

    def write(self, name: str, data: bytes) -> int:
        self.written.append(name)
        return super().write(name, data)


# -- manifest ---------------------------------------------------------------------------------


def manifest_dict(**changes: object) -> dict:
    obj = {
        "schema_version": 1,
        "format": "torchscript",
        "framework": "torch",
        "framework_version": "2.13.0",
        "files": ["model.pt"],
        "inputs": [{"shape": [1, 8], "dtype": "float32"}],
        "signature": None,
    }
    obj.update(changes)
    return obj


def test_manifest_round_trip() -> None:
    m = ExportManifest(
        "onnx", "torch", "2.13.0", ["model.onnx"], [InputSpec((1, 3, 4, 4), "float32"), InputSpec((1, 5), "int64")]
    )
    assert ExportManifest.from_json(m.to_json()) == m


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"format": "pickle"}, "format"),
        ({"files": []}, "files"),
        ({"inputs": [{"shape": [1, 0], "dtype": "float32"}]}, "inputs[0].shape"),
        ({"inputs": [{"shape": [1, 8]}]}, "inputs[0]"),
        ({"inputs": []}, "inputs"),
        ({"schema_version": 99}, "schema_version"),
        ({"framework": 3}, "framework"),
    ],
)
def test_manifest_rejects_bad_fields_by_name(changes: dict, field: str) -> None:
    with pytest.raises(ProtocolError) as info:
        ExportManifest.from_json(json.dumps(manifest_dict(**changes)).encode())
    assert info.value.field == field


def test_manifest_rejects_names_leaving_the_folder() -> None:
    with pytest.raises(UnsafePathError):
        ExportManifest.from_json(json.dumps(manifest_dict(files=["../../TRIAL_TRAINING_METRICS.json"])).encode())


def test_manifest_missing_field() -> None:
    obj = manifest_dict()
    del obj["inputs"]
    with pytest.raises(ProtocolError, match="missing field 'inputs'"):
        ExportManifest.from_json(json.dumps(obj).encode())


# -- export ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["torchscript", "torch_export"])
def test_torch_export_writes_the_model_then_the_manifest(tmp_path, fmt: str) -> None:
    storage = RecordingStorage(str(tmp_path / "trial"))
    model = tiny_model().train()
    manifest = export_for_latency(model, storage, torch.zeros(1, 8), format=fmt)
    assert model.training  # the caller's mode is restored
    assert storage.written[-1] == EXPORT_MANIFEST_FILE
    assert storage.written[:-1] == [f"saved_model/{f}" for f in manifest.files]
    assert ExportManifest.from_json(storage.read(EXPORT_MANIFEST_FILE)[0]) == manifest
    assert manifest.inputs == [InputSpec((1, 8), "float32")]

    loaded = load_exported(storage, manifest)
    out = loaded.run()
    assert tuple(out.shape) == (1, 3) and bool(torch.isfinite(out).all())
    assert loaded.device_type == "CPU"


def test_onnx_export_runs_in_onnxruntime(tmp_path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    storage = LocalStorage(tmp_path / "trial")
    manifest = export_for_latency(tiny_model(), str(tmp_path / "trial"), (torch.zeros(1, 8),), format="onnx")
    assert manifest.files == ["model.onnx"]
    (out,) = load_exported(storage, manifest).run()
    assert out.shape == (1, 3)


def test_export_refuses_batches_other_than_one(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match=r"batch size 1.*\[4, 8\].*example_input\[:1\]"):
        export_for_latency(tiny_model(), str(tmp_path), torch.zeros(4, 8))
    assert not (tmp_path / "saved_model").exists()


def test_export_refuses_unknown_models_and_formats(tmp_path) -> None:
    with pytest.raises(TypeError, match="torch.nn.Module, a Keras model or a tf.Module"):
        export_for_latency(object(), str(tmp_path), torch.zeros(1, 8))
    with pytest.raises(ConfigurationError, match="format must be one of"):
        export_for_latency(tiny_model(), str(tmp_path), torch.zeros(1, 8), format="pickle")
    with pytest.raises(ConfigurationError, match="for tensorflow models"):
        export_for_latency(tiny_model(), str(tmp_path), torch.zeros(1, 8), format="tf_saved_model")


@pytest.mark.tf
def test_keras_model_exports_a_saved_model_folder(tmp_path) -> None:
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    storage = RecordingStorage(str(tmp_path / "trial"))
    manifest = export_for_latency(model, storage, tf.zeros([1, 8]))
    assert manifest.format == "tf_saved_model" and "saved_model.pb" in manifest.files
    assert any(f.startswith("variables/") for f in manifest.files)
    assert storage.written[-1] == EXPORT_MANIFEST_FILE  # the folder first, one file at a time
    assert (tmp_path / "trial" / "saved_model" / "saved_model.pb").is_file()  # the reference's layout
    out = load_exported(storage, manifest).run()
    assert list(out.values())[0].shape == (1, 3)


# -- wait ------------------------------------------------------------------------------------


def test_wait_times_out_with_a_clear_error_when_no_worker_runs(tmp_path) -> None:
    trial = str(tmp_path / "trial")
    export_for_latency(tiny_model(), trial, torch.zeros(1, 8))
    with pytest.raises(LatencyTimeoutError) as info:
        wait_for_latency(trial, timeout_secs=0.3, poll_secs=0.05)
    message = str(info.value)
    assert "model_latency.json after 0.3 s" in message
    assert "no latency worker claimed the model" in message and "proxy-task latency-worker --watch" in message
    assert isinstance(info.value, TimeoutError)


def test_timeout_message_says_when_nothing_was_exported_or_a_worker_went_silent(tmp_path) -> None:
    storage = LocalStorage(tmp_path / "trial")
    with pytest.raises(LatencyTimeoutError, match="never exported.*call export_for_latency"):
        wait_for_latency(storage, timeout_secs=0)
    export_for_latency(tiny_model(), storage, torch.zeros(1, 8))
    storage.write_if_absent(
        p.LATENCY_WORKER_ID_FILE, p.dump_json({"latency_worker_id": 3, "worker_instance": "h:1:ab"})
    )
    with pytest.raises(LatencyTimeoutError, match=r"worker 3 \(h:1:ab\) claimed the model but has not answered"):
        wait_for_latency(storage, timeout_secs=0)


def test_wait_returns_the_answer_written_meanwhile(tmp_path) -> None:
    storage = LocalStorage(tmp_path / "trial")
    answer = p.ModelLatency(1.5, "CPU", 1024.0, {"latency_p90_in_milliseconds": 2.0})
    timer = threading.Timer(0.2, lambda: storage.write_if_absent(p.MODEL_LATENCY_FILE, p.encode_model_latency(answer)))
    timer.start()
    try:
        got = wait_for_latency(str(tmp_path / "trial"), timeout_secs=30, poll_secs=0.05)
    finally:
        timer.cancel()
    assert got == answer


def test_wait_raises_the_workers_error_at_once(tmp_path) -> None:
    storage = LocalStorage(tmp_path / "trial")
    record = {"error": "RuntimeError: bad magic number", "stage": "loading the model", "worker_id": 1}
    storage.write(LATENCY_ERROR_FILE, p.dump_json(record))
    with pytest.raises(LatencyError, match="bad magic number.*worker 1, while loading the model"):
        wait_for_latency(storage, timeout_secs=3600)


def test_wait_validates_its_arguments(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match="poll_secs"):
        wait_for_latency(str(tmp_path), poll_secs=0)
    with pytest.raises(ConfigurationError, match="timeout_secs"):
        wait_for_latency(str(tmp_path), timeout_secs=-1)


def test_importing_the_module_loads_no_framework() -> None:
    code = "import sys, proxy_task_utils.latency; print([m for m in ('torch', 'tensorflow', 'onnxruntime') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

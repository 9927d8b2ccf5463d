"""Device latency through a latency worker: export the model, wait for the answer.

The handshake keeps the reference layout (``<trial>/saved_model/``, answered
by ``saved_model/model_latency.json``) and adds two files of ours:

* ``saved_model/export.json`` — the manifest (format, files, input shapes and
  dtypes). It is written **last**, so a worker that sees it sees a complete
  export, on a local folder and on ``gs://`` alike.
* ``saved_model/latency_error.json`` — written by a worker instead of the
  answer when the model cannot be loaded or run, so :func:`wait_for_latency`
  raises that error at once instead of timing out.

Trainer side (the last three lines are :func:`export_and_wait_for_latency`)::

    export_for_latency(model, model_dir, example_input)   # torch or Keras/TF
    latency = wait_for_latency(model_dir, timeout_secs=600)
    update_trial_training_latency_metric(model_dir, latency.latency_in_milliseconds)

A trial restarted after its model was answered gets the recorded answer: the
worker never measures a folder twice and never overwrites an answer.

:func:`load_exported` is the worker's side of the same format. torch,
TensorFlow and onnxruntime are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from proxy_task_utils import protocol as p
from proxy_task_utils.errors import (
    ConfigurationError,
    LatencyError,
    LatencyTimeoutError,
    NotFoundError,
    ProtocolError,
)
from proxy_task_utils.storage import Storage, open_storage, safe_join

__all__ = [
    "EXPORT_MANIFEST_FILE",
    "LATENCY_ERROR_FILE",
    "FORMATS",
    "InputSpec",
    "ExportManifest",
    "LatencyError",
    "LatencyTimeoutError",
    "LoadedModel",
    "export_for_latency",
    "wait_for_latency",
    "export_and_wait_for_latency",
    "load_exported",
    "decode_latency_error",
]

logger = logging.getLogger("proxy_task_utils")

EXPORT_MANIFEST_FILE = "saved_model/export.json"
LATENCY_ERROR_FILE = "saved_model/latency_error.json"
MANIFEST_SCHEMA_VERSION = 1

# format -> (framework, the single model file inside saved_model/, or None for a folder)
FORMATS: dict[str, tuple[str, str | None]] = {
    "torchscript": ("torch", "model.pt"),
    "torch_export": ("torch", "model.pt2"),
    "onnx": ("torch", "model.onnx"),
    "tf_saved_model": ("tensorflow", None),
}
_TORCH_DEFAULT_FORMAT = "torchscript"


@dataclass(frozen=True)
class InputSpec:
    """Shape and dtype (``"float32"``, ``"int64"``, ...) of one model input."""

    shape: tuple[int, ...]
    dtype: str


@dataclass
class ExportManifest:
    """``saved_model/export.json``: what a worker needs to load and feed the model."""

    format: str
    framework: str
    framework_version: str
    files: list[str]  # relative to saved_model/
    inputs: list[InputSpec]
    signature: str | None = None  # TF only
    schema_version: int = MANIFEST_SCHEMA_VERSION

    def to_json(self) -> bytes:
        return p.dump_json(
            {
                "schema_version": self.schema_version,
                "format": self.format,
                "framework": self.framework,
                "framework_version": self.framework_version,
                "files": list(self.files),
                "inputs": [{"shape": list(i.shape), "dtype": i.dtype} for i in self.inputs],
                "signature": self.signature,
            }
        )

    @classmethod
    def from_json(cls, data: bytes, *, path: str = EXPORT_MANIFEST_FILE) -> ExportManifest:
        """Parse and validate; errors name the file and the field."""
        obj = p.load_json_object(data, path=path)

        def need(key: str, kind: type | tuple[type, ...]) -> Any:
            if key not in obj:
                raise ProtocolError(f"{path}: missing field {key!r}", path=path, field=key)
            if not isinstance(obj[key], kind) or isinstance(obj[key], bool):
                raise ProtocolError(f"{path}: field {key!r} has the wrong type: {obj[key]!r}", path=path, field=key)
            return obj[key]

        version = need("schema_version", int)
        if version > MANIFEST_SCHEMA_VERSION:
            raise ProtocolError(
                f"{path}: schema_version {version} is newer than this worker understands "
                f"({MANIFEST_SCHEMA_VERSION}); upgrade proxy-task-utils on the worker",
                path=path,
                field="schema_version",
            )
        fmt = need("format", str)
        if fmt not in FORMATS:
            raise ProtocolError(
                f"{path}: field 'format' must be one of {sorted(FORMATS)}, but got {fmt!r}", path=path, field="format"
            )
        files = need("files", list)
        if not files or not all(isinstance(f, str) for f in files):
            raise ProtocolError(f"{path}: field 'files' must be a non-empty list of names", path=path, field="files")
        for name in files:
            safe_join(name)  # UnsafePathError for names that would leave saved_model/
        inputs: list[InputSpec] = []
        for i, raw in enumerate(need("inputs", list)):
            where = f"inputs[{i}]"
            if (
                not isinstance(raw, dict)
                or not isinstance(raw.get("dtype"), str)
                or not isinstance(raw.get("shape"), list)
            ):
                raise ProtocolError(
                    f"{path}: field {where!r} must be {{'shape': [ints], 'dtype': str}}", path=path, field=where
                )
            shape = raw["shape"]
            if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
                raise ProtocolError(
                    f"{path}: field '{where}.shape' must hold positive ints, but got {shape!r}",
                    path=path,
                    field=where + ".shape",
                )
            inputs.append(InputSpec(tuple(shape), raw["dtype"]))
        if not inputs:
            raise ProtocolError(f"{path}: field 'inputs' must not be empty", path=path, field="inputs")
        signature = obj.get("signature")
        if signature is not None and not isinstance(signature, str):
            raise ProtocolError(f"{path}: field 'signature' must be a string or null", path=path, field="signature")
        return cls(
            format=fmt,
            framework=need("framework", str),
            framework_version=need("framework_version", str),
            files=list(files),
            inputs=inputs,
            signature=signature,
            schema_version=version,
        )


def _as_storage(model_dir: str | os.PathLike[str] | Storage) -> Storage:
    return model_dir if isinstance(model_dir, Storage) else open_storage(model_dir)


# -- export (trainer side) ----------------------------------------------------------------


def export_for_latency(
    model: Any,
    model_dir: str | os.PathLike[str] | Storage,
    example_input: Any,
    *,
    format: str | None = None,  # noqa: A002 - the manifest's field name
) -> ExportManifest:
    """Export ``model`` into ``<model_dir>/saved_model/`` for a latency worker.

    Dispatches on the framework: a ``torch.nn.Module`` becomes TorchScript
    (default), ``torch_export`` (``.pt2``) or ONNX; a Keras model or
    ``tf.Module`` becomes a TF SavedModel. ``example_input`` (one tensor or a
    tuple of tensors) must have batch size 1: the worker measures batch-1
    latency on inputs of the same shapes and dtypes. Files go through the
    storage interface (``gs://`` works); the manifest is written last.

    Raises:
        TypeError: ``model`` is neither a torch nor a TensorFlow model.
        ConfigurationError: unknown ``format``, or a batch size other than 1.
    """
    storage = _as_storage(model_dir)
    framework = _framework_of(model)
    if format is None:
        format = _TORCH_DEFAULT_FORMAT if framework == "torch" else "tf_saved_model"  # noqa: A001
    if format not in FORMATS:
        raise ConfigurationError(f"format must be one of {sorted(FORMATS)}, but got {format!r}")
    if FORMATS[format][0] != framework:
        raise ConfigurationError(
            f"format={format!r} is for {FORMATS[format][0]} models, but the model is a {framework} model"
        )
    examples = tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)
    if not examples:
        raise ConfigurationError("example_input must be a tensor or a non-empty tuple of tensors")
    if framework == "torch":
        files, inputs, version = _export_torch(model, examples, format, storage)
        signature = None
    else:
        files, inputs, version = _export_tf(model, examples, storage)
        signature = "serving_default"
    manifest = ExportManifest(format, framework, version, files, inputs, signature)
    storage.write(EXPORT_MANIFEST_FILE, manifest.to_json())  # last: the export is complete
    logger.info("exported %s model for latency measurement to %s", format, storage.child_uri(p.SAVED_MODEL_DIR))
    return manifest


def _framework_of(model: Any) -> str:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, (torch.nn.Module, torch.jit.ScriptModule)):
        return "torch"
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(model, tf.Module):
        return "tensorflow"
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(model, keras.Model):
        return "tensorflow"
    raise TypeError(
        f"model must be a torch.nn.Module, a Keras model or a tf.Module, but got {type(model).__module__}.{type(model).__name__}"
    )


def _check_batch_one(shape: Sequence[int], i: int) -> tuple[int, ...]:
    shape = tuple(int(d) for d in shape)
    if not shape or shape[0] != 1:
        raise ConfigurationError(
            f"example_input[{i}] must have batch size 1 (latency is measured at batch 1), but has shape "
            f"{list(shape)}; pass example_input[:1]"
        )
    return shape


def _export_torch(
    model: Any, examples: tuple[Any, ...], fmt: str, storage: Storage
) -> tuple[list[str], list[InputSpec], str]:
    import torch

    inputs = []
    for i, x in enumerate(examples):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"example_input[{i}] must be a torch.Tensor, but got {type(x).__name__}")
        inputs.append(InputSpec(_check_batch_one(x.shape, i), str(x.dtype).removeprefix("torch.")))
    examples = tuple(x.detach().cpu() for x in examples)
    was_training = getattr(model, "training", False)
    model = model.eval()
    buf = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", category=DeprecationWarning)  # TorchScript and the legacy ONNX exporter
            warnings.simplefilter("ignore", category=FutureWarning)
            if fmt == "torchscript":
                scripted = model if isinstance(model, torch.jit.ScriptModule) else torch.jit.trace(model, examples)
                torch.jit.save(scripted, buf)
            elif fmt == "torch_export":
                torch.export.save(torch.export.export(model, examples), buf)
            else:  # onnx: the TorchScript-based exporter needs only the onnx package
                names = [f"input_{i}" for i in range(len(examples))]
                torch.onnx.export(model, examples, buf, dynamo=False, input_names=names)  # type: ignore[arg-type]  # a file object is accepted
    finally:
        if was_training:
            model.train()
    name = FORMATS[fmt][1]
    assert name is not None
    storage.write(f"{p.SAVED_MODEL_DIR}/{name}", buf.getvalue())
    return [name], inputs, torch.__version__


def _export_tf(model: Any, examples: tuple[Any, ...], storage: Storage) -> tuple[list[str], list[InputSpec], str]:
    import tensorflow as tf

    inputs, specs = [], []
    for i, x in enumerate(examples):
        t = tf.convert_to_tensor(x)
        inputs.append(InputSpec(_check_batch_one(t.shape, i), t.dtype.name))
        specs.append(tf.TensorSpec(t.shape, t.dtype, name=f"input_{i}"))

    @tf.function(input_signature=specs)
    def serve(*args: Any) -> Any:
        return model(args[0] if len(args) == 1 else list(args), training=False)

    holder = tf.Module()
    holder.model = model  # tracks the variables
    holder.serve = serve
    files: list[str] = []
    with tempfile.TemporaryDirectory(prefix="proxy-task-export-") as tmp:
        tf.saved_model.save(holder, tmp, signatures={"serving_default": serve})
        for root, _, names in os.walk(tmp):
            for filename in sorted(names):
                rel = os.path.relpath(os.path.join(root, filename), tmp).replace(os.sep, "/")
                with open(os.path.join(root, filename), "rb") as f:
                    storage.write(f"{p.SAVED_MODEL_DIR}/{rel}", f.read())
                files.append(rel)
    return sorted(files), inputs, tf.__version__


# -- wait (trainer side) ----------------------------------------------------------------


def decode_latency_error(data: bytes, *, path: str = LATENCY_ERROR_FILE) -> str:
    """The human message of a ``latency_error.json``."""
    obj = p.load_json_object(data, path=path)
    error = obj.get("error")
    if not isinstance(error, str):
        raise ProtocolError(f"{path}: field 'error' must be a string", path=path, field="error")
    who = obj.get("worker_id")
    stage = obj.get("stage")
    return f"{error} (worker {who}, while {stage})" if stage else error


def wait_for_latency(
    model_dir: str | os.PathLike[str] | Storage,
    *,
    timeout_secs: float = 600.0,
    poll_secs: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> p.ModelLatency:
    """Wait until a latency worker answers for ``<model_dir>/saved_model``.

    One storage request per poll (a generation probe of the answer and the
    error file). The timeout is measured on this process's monotonic clock.

    Raises:
        LatencyError: the worker wrote ``latency_error.json`` (the model did not load or run).
        LatencyTimeoutError: no answer after ``timeout_secs``; the message says
            whether the export was found and claimed, and how to start a worker.
        ProtocolError: the answer file is malformed.
    """
    if not timeout_secs >= 0:
        raise ConfigurationError(f"timeout_secs must be >= 0, but got {timeout_secs!r}")
    if not poll_secs > 0:
        raise ConfigurationError(f"poll_secs must be > 0, but got {poll_secs!r}")
    storage = _as_storage(model_dir)
    deadline = clock() + timeout_secs
    while True:
        gens = storage.generations([p.MODEL_LATENCY_FILE, LATENCY_ERROR_FILE])
        if gens[LATENCY_ERROR_FILE] is not None:
            data, _ = storage.read(LATENCY_ERROR_FILE)
            where = storage.child_uri(LATENCY_ERROR_FILE)
            raise LatencyError(
                f"the latency worker could not measure {storage.uri}: {decode_latency_error(data, path=where)}"
            )
        if gens[p.MODEL_LATENCY_FILE] is not None:
            data, _ = storage.read(p.MODEL_LATENCY_FILE)
            return p.decode_model_latency(data, path=storage.child_uri(p.MODEL_LATENCY_FILE))
        remaining = deadline - clock()
        if remaining <= 0:
            raise LatencyTimeoutError(_timeout_message(storage, timeout_secs))
        sleep(min(poll_secs, remaining))


def export_and_wait_for_latency(
    model: Any,
    model_dir: str,
    example_input: Any,
    *,
    timeout_secs: float = 600.0,
    poll_secs: float = 5.0,
    format: str | None = None,  # noqa: A002
    record: bool = True,
) -> p.ModelLatency:
    """Export, wait for the worker's answer and (``record``) store it as the trial's latency.

    The reference's tf_vision trainer does the same at the end of training
    (export, ``wait_and_retrieve_latency``, ``update_trial_training_latency_metric``).
    Raises what :func:`export_for_latency` and :func:`wait_for_latency` raise.
    """
    export_for_latency(model, model_dir, example_input, format=format)
    latency = wait_for_latency(model_dir, timeout_secs=timeout_secs, poll_secs=poll_secs)
    if record:
        from proxy_task_utils import update_trial_training_latency_metric

        update_trial_training_latency_metric(model_dir, latency.latency_in_milliseconds)
    return latency


def _timeout_message(storage: Storage, timeout_secs: float) -> str:
    answer = storage.child_uri(p.MODEL_LATENCY_FILE)
    head = f"no {answer} after {timeout_secs:g} s: "
    gens = storage.generations([EXPORT_MANIFEST_FILE, p.LATENCY_WORKER_ID_FILE])
    if gens[EXPORT_MANIFEST_FILE] is None:
        return (
            head
            + f"the model was never exported ({storage.child_uri(EXPORT_MANIFEST_FILE)} is missing); call export_for_latency first"
        )
    if gens[p.LATENCY_WORKER_ID_FILE] is not None:
        with contextlib.suppress(NotFoundError, ProtocolError):
            claim = p.load_json_object(storage.read(p.LATENCY_WORKER_ID_FILE)[0], path=p.LATENCY_WORKER_ID_FILE)
            return head + (
                f"worker {claim.get('latency_worker_id')} ({claim.get('worker_instance', '?')}) claimed the model but "
                "has not answered: it may be busy or dead; check its log, or raise timeout_secs"
            )
    return head + (
        "no latency worker claimed the model; start one on the trial's controller folder "
        "(`proxy-task latency-worker --watch <controller dir>`) or raise timeout_secs"
    )


# -- load (worker side) -------------------------------------------------------------------


@dataclass
class LoadedModel:
    """An exported model ready to run one batch-1 forward pass on fixed inputs."""

    run: Callable[[], Any]
    device_type: str  # "CPU" or "GPU" (reference values)
    synchronize: Callable[[], None] = lambda: None
    device_memory_bytes: Callable[[], int | None] = lambda: None  # None: not a device with its own memory


def _is_gpu(device: str) -> bool:
    return device.startswith("cuda") or device.startswith("gpu")


@contextlib.contextmanager
def _downloaded(storage: Storage, manifest: ExportManifest) -> Iterator[str]:
    """Copy the exported files into a local temp folder (works for gs:// too)."""
    with tempfile.TemporaryDirectory(prefix="proxy-task-latency-") as tmp:
        for name in manifest.files:
            data, _ = storage.read(f"{p.SAVED_MODEL_DIR}/{name}")
            dest = os.path.join(tmp, *safe_join(name).split("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as f:
                f.write(data)
        yield tmp


def load_exported(trial: Storage, manifest: ExportManifest, *, device: str = "cpu", seed: int = 0) -> LoadedModel:
    """Load what :func:`export_for_latency` wrote and prepare random inputs of the recorded shapes.

    ``device``: ``cpu``, ``cuda``/``cuda:N`` (torch, onnxruntime) or ``gpu``.
    Raises whatever the framework raises when the model does not load.
    """
    with _downloaded(trial, manifest) as folder:
        if manifest.framework == "torch" and manifest.format != "onnx":
            return _load_torch(folder, manifest, device, seed)
        if manifest.format == "onnx":
            return _load_onnx(folder, manifest, device, seed)
        return _load_tf(folder, manifest, device, seed)


def _load_torch(folder: str, manifest: ExportManifest, device: str, seed: int) -> LoadedModel:
    import torch

    gpu = _is_gpu(device)
    dev = torch.device(device.replace("gpu", "cuda"))
    base = 0
    if gpu:
        torch.cuda.synchronize(dev)
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    path = os.path.join(folder, FORMATS[manifest.format][1] or "")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        if manifest.format == "torchscript":
            model = torch.jit.load(path, map_location=dev).eval()
            try:  # as deployed: frozen weights, inference passes, fewer profiling runs to warm up
                model = torch.jit.optimize_for_inference(torch.jit.freeze(model))
            except Exception as exc:  # noqa: BLE001 - some scripted models cannot be frozen; run them as saved
                logger.info("TorchScript model not frozen (%s); measuring it as saved", exc)
        else:
            model = torch.export.load(path).module().to(dev)
    gen = torch.Generator().manual_seed(seed)
    args = []
    for spec in manifest.inputs:
        dtype = getattr(torch, spec.dtype)
        if dtype.is_floating_point:
            args.append(torch.randn(spec.shape, generator=gen).to(dtype=dtype, device=dev))
        else:
            args.append(torch.zeros(spec.shape, dtype=dtype, device=dev))

    def run() -> Any:
        with torch.inference_mode():
            return model(*args)

    return LoadedModel(
        run=run,
        device_type="GPU" if gpu else "CPU",
        synchronize=(lambda: torch.cuda.synchronize(dev)) if gpu else (lambda: None),
        device_memory_bytes=(lambda: torch.cuda.max_memory_allocated(dev) - base) if gpu else (lambda: None),
    )


def _load_onnx(folder: str, manifest: ExportManifest, device: str, seed: int) -> LoadedModel:
    import numpy as np
    import onnxruntime as ort

    gpu = _is_gpu(device)
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else ["CPUExecutionProvider"]
    session = ort.InferenceSession(os.path.join(folder, "model.onnx"), providers=providers)
    rng = np.random.default_rng(seed)
    feeds = {}
    for meta, spec in zip(session.get_inputs(), manifest.inputs):
        dtype = np.dtype(spec.dtype)
        value = rng.standard_normal(spec.shape) if dtype.kind == "f" else np.zeros(spec.shape)
        feeds[meta.name] = value.astype(dtype)
    return LoadedModel(run=lambda: session.run(None, feeds), device_type="GPU" if gpu else "CPU")


def _load_tf(folder: str, manifest: ExportManifest, device: str, seed: int) -> LoadedModel:
    import tensorflow as tf

    gpu = _is_gpu(device)
    tf_device = "/GPU:0" if gpu else "/CPU:0"
    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
    with tf.device(tf_device):
        loaded = tf.saved_model.load(folder)
        fn = loaded.signatures[manifest.signature or "serving_default"]
        gen = tf.random.Generator.from_seed(seed)
        feeds = {}
        for i, spec in enumerate(manifest.inputs):
            dtype = tf.as_dtype(spec.dtype)
            value = gen.normal(spec.shape) if dtype.is_floating else tf.zeros(spec.shape, tf.int32)
            feeds[f"input_{i}"] = tf.cast(value, dtype)

    def run() -> Any:
        with tf.device(tf_device):
            out = fn(**feeds)
            for t in out.values():
                t.numpy()  # wait for the device
            return out

    def memory() -> int | None:
        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"]) if gpu else None

    return LoadedModel(run=run, device_type="GPU" if gpu else "CPU", device_memory_bytes=memory)

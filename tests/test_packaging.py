"""The wheel carries the bundled examples, so an installed package runs `proxy-task demo` (see .ci/run)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_ships_the_demo(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)  # fmt: skip
    (wheel,) = tmp_path.glob("proxy_task_utils-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("examples/pytorch/pipeline.yaml", "examples/pytorch/pipeline_small.yaml",
                   "examples/pytorch/trainer.py", "examples/digits/data.py", "controllers/pipeline.py"):  # fmt: skip
        assert needed in names, needed
    assert not any(n.startswith("tests/") for n in names)

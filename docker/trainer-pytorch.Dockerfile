# The example PyTorch trainer, for Ray clusters and Vertex AI custom jobs (CPU wheel of torch).
#
# Build from the repository root (not built in CI: there is no docker engine there):
#   docker build -f docker/trainer-pytorch.Dockerfile -t trainer-pytorch .
# The controller passes only flags (`--job-dir=gs://.../nas/search/<id> --nas_params_str=... --key=value`);
# the ENTRYPOINT below is the trainer. For a GPU image, start from a CUDA base image and
# take torch==2.13.0 from the matching PyTorch CUDA index instead.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_NUM_THREADS=1

WORKDIR /app
# torch first, from the CPU index, so that the extras below find it installed (no CUDA wheels)
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"

COPY pyproject.toml README.md ./
COPY proxy_task_utils ./proxy_task_utils
COPY controllers ./controllers
RUN pip install ".[torch,examples,gcs]"

# examples/ is not part of the distribution: it runs from the working directory /app
COPY examples ./examples

ENTRYPOINT ["python", "-m", "examples.pytorch.trainer"]

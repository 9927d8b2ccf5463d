# The controllers (`proxy-task` CLI): variance measurement, model selection, proxy search.
#
# Build from the repository root (not built in CI: there is no docker engine there):
#   docker build -f docker/controllers.Dockerfile -t proxy-task-controllers .
# Add a runner's extra when the controller itself launches the trials:
#   docker build -f docker/controllers.Dockerfile --build-arg EXTRAS=controllers,gcs,vertex -t ... .
# Run:
#   docker run --rm proxy-task-controllers search /cfg/search.yaml --no-progress
FROM python:3.11-slim

ARG EXTRAS=controllers,gcs
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY proxy_task_utils ./proxy_task_utils
COPY controllers ./controllers
RUN pip install ".[${EXTRAS}]"

# examples/ is not part of the distribution; it is copied so that configs that name
# `examples.pytorch.proxy_configs:...` or `examples.pytorch.search_space:...` resolve from /app.
COPY examples ./examples

ENTRYPOINT ["proxy-task"]
CMD ["--help"]

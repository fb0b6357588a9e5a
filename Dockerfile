# The recsys image: every `recsys` command (the batch jobs and the gRPC server), CPU only.
# Used by docker-compose.yml for both the one-shot pipeline job and the server:
#   docker compose up --build
# or alone:
#   docker build -t recsys-sasrec .
#   docker run --rm -p 50051:50051 -v "$PWD/runs/demo/artifact:/artifacts/artifact:ro" \
#       recsys-sasrec serve --artifact /artifacts/artifact --host 0.0.0.0
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, pinned, from the CPU index: the project's requirement (torch>=2.4,<2.14) is then
# already met, so `pip install .` never pulls PyPI's multi-GB CUDA build on top.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

WORKDIR /app
COPY pyproject.toml README.md ./
COPY recsys ./recsys
COPY pipelines ./pipelines
COPY serving ./serving
# The project without its dev extra; the build fails if anything replaced the CPU torch.
RUN pip install . \
    && python -c "import torch; assert torch.__version__.startswith('2.13.0') and torch.version.cuda is None, torch.__version__"

# Non-root. /artifacts is created here so that a fresh named volume mounted on it (compose's
# `artifacts`) starts out owned by this user.
RUN groupadd --gid 10001 recsys \
    && useradd --create-home --uid 10001 --gid 10001 recsys \
    && mkdir /artifacts \
    && chown 10001:10001 /artifacts
USER 10001:10001

EXPOSE 50051

# The gRPC health service ("" is SERVING while the model serves). python -m pipelines.service.health is
# `recsys health` without importing torch, so a probe costs a fraction of a second of CPU.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "pipelines.service.health", "--target", "127.0.0.1:50051"]

# `docker run IMAGE` alone prints the commands (recsys with no arguments shows its help).
ENTRYPOINT ["recsys"]

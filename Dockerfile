# Pinned base image (exact Python patch release and Debian release): rebuilds are reproducible
# until you bump it on purpose.
FROM python:3.11.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md settings.py ./
COPY asyncjobs ./asyncjobs
COPY web ./web
RUN pip install .
RUN groupadd --system --gid 10001 asyncjobs && useradd --system --uid 10001 --gid asyncjobs --no-create-home --shell /usr/sbin/nologin asyncjobs

# Not root: a job that is tricked into running code owns nothing in the image (numeric, so
# the runAsNonRoot check of Kubernetes can verify it).
USER 10001:10001

CMD ["asyncjobs", "worker"]

# The Workflow Service: the gateway, its job manager and (unless RAY_ADDRESS names a cluster) a local
# Ray instance. Python packages are exactly requirements.lock (see deploy/freeze_requirements.py).
FROM python:3.11-slim-bookworm

# bubblewrap and libseccomp2 (its seccomp filter, through pyseccomp): the code node's sandbox. tini:
# PID 1, forwards signals to the gateway and reaps the zombies that Ray's many short-lived worker
# processes would otherwise leave.
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap libseccomp2 tini \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# The pinned set alone, without resolving anything (--no-deps); `pip check` fails the build if the
# lock is not a complete, consistent set. This layer changes only when the lock does.
COPY requirements.lock /app/requirements.lock
RUN pip install --no-deps -r /app/requirements.lock && pip check

# The service's own code, importable from /app (Ray's worker processes inherit PYTHONPATH).
COPY actors /app/actors
COPY cli /app/cli
COPY config /app/config
COPY engine /app/engine
COPY gateway /app/gateway
COPY nodes /app/nodes
COPY storage /app/storage
COPY examples /app/examples
COPY deploy/sandbox-cgroups.sh /usr/local/bin/sandbox-cgroups
ENV PYTHONPATH=/app

# An unprivileged user runs the gateway. The bubblewrap sandbox needs root (it drops user code to a
# uid of its own) and a cgroup per run, so as this user code nodes refuse to run (/health says why)
# unless SANDBOX_ALLOW_UNSANDBOXED=true; deploy/compose.sandbox.yml runs this image as root with what
# the sandbox needs, through sandbox-cgroups (docs/deployment.md, "User code").
RUN useradd --create-home --uid 10001 --user-group workflow \
    && mkdir /data \
    && chown workflow:workflow /data
USER workflow
WORKDIR /home/workflow

# HOST=0.0.0.0: the container is reached from outside, so the service requires JWT_SECRET (at least 32
# bytes: `docker run -e JWT_SECRET=...`) and refuses to start without it.
ENV HOST=0.0.0.0 \
    PORT=8001 \
    DATA_DIR=/data \
    LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8001

# /health answers 503 while the store, the event bus or Ray is down; urlopen raises on it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8001') + '/health', timeout=4)"]

ENTRYPOINT ["tini", "--"]
CMD ["python", "-m", "cli", "serve"]

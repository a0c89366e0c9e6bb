# Baton: `docker build -t baton .` then
#   docker run -p 8080:8080 -v baton-data:/data -v ./playbooks:/app/playbooks baton
#   Reachable by others: set BATON_API_TOKEN and BATON_API_READ_TOKEN=required, or every
#   run's params and outputs are readable by anyone who reaches the port. The dashboard
#   needs people (`users:` in BATON_CONFIG) here, or -e BATON_DASHBOARD=false: on 0.0.0.0
#   `baton serve` refuses to start without either.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    BATON_HOST=0.0.0.0 \
    BATON_PORT=8080 \
    BATON_DATABASE_URL=sqlite:////data/baton.db \
    BATON_KEY_FILE=/data/secret.key \
    BATON_PLAYBOOKS=/app/playbooks

WORKDIR /app

# Graphviz draws the dashboard's run graphs (`dot -Tsvg`, bot/dashboard/dag.py).
RUN apt-get update && apt-get install -y --no-install-recommends graphviz && \
    rm -rf /var/lib/apt/lists/*

# Dependencies first, read from pyproject.toml alone, so code edits reuse this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt && \
    pip install -r /tmp/requirements.txt && \
    useradd --create-home --uid 10001 baton && \
    mkdir -p /data && chown baton:baton /data

# Then Baton itself (no dependencies left to fetch).
COPY README.md ./
COPY bot ./bot
COPY engine ./engine
COPY storage ./storage
RUN pip install --no-deps .

COPY --chown=baton:baton playbooks ./playbooks

USER baton
VOLUME ["/data", "/app/playbooks"]
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD python -c "import os,urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('BATON_PORT','8080'), timeout=4)"

# SIGTERM lets running steps finish (BATON_DRAIN_TIMEOUT); give Docker as long.
STOPSIGNAL SIGTERM
CMD ["baton", "serve"]

# One image for the four CountyPool services; docker-compose.yml picks the service with its command,
# e.g. `python -m services.ledger.main`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    COUNTYPOOL_DATA_DIR=/app/.data

WORKDIR /app

RUN groupadd --system --gid 10001 countypool \
 && useradd --system --uid 10001 --gid countypool --home-dir /app --no-create-home --shell /usr/sbin/nologin countypool

# Dependencies first (their own layer: rebuilt only when pyproject.toml or constraints.txt changes), at the
# versions the test suite passed with.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install -c constraints.txt -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# The project itself. The sources stay in /app too: `python -m` puts the working directory first on
# sys.path, and the services' Alembic migrations (not Python packages) are read from there.
COPY shared/ shared/
COPY services/ services/
COPY ops/ ops/
RUN pip install --no-deps . \
 && rm -rf build *.egg-info
# deploy/ holds the development token file (COUNTYPOOL_AUTH_TOKENS_FILE=/app/deploy/dev-tokens.json).
COPY deploy/ deploy/

RUN mkdir -p /app/.data && chown countypool:countypool /app/.data
USER countypool

# ledger, quota, settlement, assessment (shared/settings.DEFAULT_PORTS)
EXPOSE 8001 8002 8003 8004

CMD ["python", "-m", "services.ledger.main"]

# One image for `lingtan collect` and `lingtan api` (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/lingtan
# the package metadata first, so a code change does not re-resolve the dependencies' layer
COPY pyproject.toml README.md ./
COPY app ./app
COPY collectors ./collectors
COPY lingtan ./lingtan
COPY simulator ./simulator
COPY dashboards ./dashboards
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /data lingtan \
    && mkdir -p /data && chown lingtan /data

# spool, embedded store and ledger; a named volume in compose so they survive restarts
ENV LINGTAN_DATA_DIR=/data
VOLUME ["/data"]
USER lingtan
# `lingtan dashboards push` finds ./dashboards here
EXPOSE 8000 9108
CMD ["lingtan", "api"]

# The backupd image: the agent (`backupd`, the entry point) and the operator CLI (`backupctl`), with the
# client tools of the source engines (sqlite3; PostgreSQL's pg_dump, pg_restore, psql, pg_basebackup).
#
# Build it from a checkout after `npm ci && npm run build` on Linux (the native modules in node_modules are
# the host's builds; docs/DEPLOY.md says why and what it costs):
#   docker build -t backupd:local .
# BASE_IMAGE must provide Node 20 (>= 20.19) on a Debian bookworm userland; the tools are installed from
# Debian when it lacks them. The tests build it FROM a locally made base that has them already.
ARG BASE_IMAGE=node:20-bookworm-slim

FROM ${BASE_IMAGE} AS app
WORKDIR /opt/backupd
COPY package.json package-lock.json ./
# node_modules follows from the lock file, so the lock file (copied above) keys this step's cache: an
# unchanged lock reuses the layer without reading node_modules again. The development packages are dropped
# offline (the lock file says which are which) and the native modules must load.
RUN --mount=type=bind,source=node_modules,target=/tmp/node_modules \
    cp -a /tmp/node_modules ./node_modules \
 && npm prune --omit=dev --offline --no-audit --no-fund --loglevel=error \
 && node -e "require('better-sqlite3'); require('zstd-napi'); require('@napi-rs/blake-hash')"
COPY proto ./proto
COPY dist/src ./dist/src
COPY deploy/healthcheck.mjs ./deploy/healthcheck.mjs

FROM ${BASE_IMAGE}
# Tools the sources run, and tini so signals reach backupd and exited children are reaped.
RUN set -eu; missing=""; \
    command -v sqlite3 >/dev/null || missing="$missing sqlite3"; \
    command -v pg_dump >/dev/null || ls /usr/lib/postgresql/*/bin/pg_dump >/dev/null 2>&1 || missing="$missing postgresql-client"; \
    command -v tini >/dev/null || missing="$missing tini"; \
    if [ -n "$missing" ]; then \
      apt-get update && apt-get install -y --no-install-recommends $missing && rm -rf /var/lib/apt/lists/*; \
    fi; \
    groupadd --gid 10001 backupd; \
    useradd --no-create-home --uid 10001 --gid backupd --home-dir /var/lib/backupd --shell /usr/sbin/nologin backupd; \
    mkdir -p /var/lib/backupd /etc/backupd; \
    chown backupd:backupd /var/lib/backupd; \
    chmod 0700 /var/lib/backupd
COPY --from=app /opt/backupd /opt/backupd
RUN ln -s /opt/backupd/dist/src/cli/backupd.js /usr/local/bin/backupd \
 && ln -s /opt/backupd/dist/src/cli/backupctl.js /usr/local/bin/backupctl \
 && printf '#!/bin/sh\nexec node /opt/backupd/deploy/healthcheck.mjs "$@"\n' > /usr/local/bin/backupd-health \
 && chmod 0755 /usr/local/bin/backupd-health /opt/backupd/dist/src/cli/backupd.js /opt/backupd/dist/src/cli/backupctl.js

ENV NODE_ENV=production \
    BACKUPD_LISTEN=0.0.0.0:50051 \
    BACKUPD_DATA_DIR=/var/lib/backupd
USER backupd
WORKDIR /var/lib/backupd
VOLUME /var/lib/backupd
EXPOSE 50051
# gRPC health checking (grpc.health.v1) of the local agent; Kubernetes can use its native gRPC probe instead.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["backupd-health"]
# The config: a file in BACKUPD_CONFIG (e.g. /etc/backupd/backupd.json, mounted) and BACKUPD_* variables
# (docs/AGENT.md); flags after the image name are passed on.
ENTRYPOINT ["tini", "--", "backupd"]

# syntax=docker/dockerfile:1
#
# easybackup container image: the supervisor by default, `once` for cron/Kubernetes CronJobs.
#
#   docker build -t easybackup .
#   docker run -d --name easybackup --stop-timeout 90 -p 8080:8080 \
#     -v "$PWD/config.yaml:/etc/easybackup/config.yaml:ro" --env-file .env easybackup
#   docker run --rm -v "$PWD/config.yaml:/etc/easybackup/config.yaml:ro" --env-file .env easybackup once --strategy NAME
#
# The base is pinned by tag. To pin by digest as well (reproducible, immune to a re-pushed tag), resolve it with
#   docker buildx imagetools inspect python:3.12.7-alpine3.20     (the "Digest: sha256:..." line)
# and write FROM python:3.12.7-alpine3.20@sha256:<digest> in both stages (or pass --build-arg PYTHON_IMAGE=...).
ARG PYTHON_IMAGE=python:3.12.7-alpine3.20

# ---------------------------------------------------------------------------------------------------------------
# build: wheels of every runtime requirement and of easybackup itself, so the runtime stage needs no compiler.
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY requirements.txt ./
RUN pip wheel --no-cache-dir --wheel-dir /wheels -r requirements.txt
COPY setup.py README.md ./
COPY schema/ schema/
COPY easybackup/ easybackup/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---------------------------------------------------------------------------------------------------------------
# runtime
FROM ${PYTHON_IMAGE}

# pg_dump reads servers of its own major version and older, never newer: PG_MAJOR must be at least the newest
# PostgreSQL server you back up. 16, the newest major Alpine 3.20 ships, reads servers up to 16. Another major:
# `--build-arg PG_MAJOR=15` (any postgresqlNN-client package of the base's Alpine release). For 17 or newer,
# also move PYTHON_IMAGE to an Alpine release that ships it (3.21 has postgresql17-client).
ARG PG_MAJOR=16
ARG VERSION=0.1.0
ARG REVISION=unknown

LABEL org.opencontainers.image.title="easybackup" \
      org.opencontainers.image.description="Streaming PostgreSQL backups to S3 on a schedule, with Slack, health and Prometheus" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

# Alpine's repositories keep only the newest build of each package in a release branch, so pinning
# `pkg=version` here would break the build at the next security update; the Alpine release in the base tag
# is the pin. tini reaps orphans as PID 1; pigz/zstd are the compressors; age encrypts (`encryption.age`);
# openssh-client serves `tunnel`; mariadb-client (mariadb-dump, mariadb) backs up and restores MySQL and MariaDB.
# hadolint ignore=DL3018
RUN apk add --no-cache \
        "postgresql${PG_MAJOR}-client" \
        mariadb-client \
        pigz \
        zstd \
        age \
        openssh-client \
        tzdata \
        tini \
    && pg_dump --version \
    && age --version \
    && mariadb-dump --version \
    && addgroup -S -g 10001 easybackup \
    && adduser -S -D -H -u 10001 -G easybackup -h /var/lib/easybackup -s /sbin/nologin easybackup \
    && mkdir -p /etc/easybackup \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/easybackup

# The wheels come from the build stage through a bind mount, so they never land in a layer of this image.
# --no-index makes /wheels the only source and it holds one build of each package, so the versions are
# already fixed by the build stage (hence no `==` pins here).
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels easybackup \
    && easybackup --version

ENV EASYBACKUP_CONFIG=/etc/easybackup/config.yaml \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/var/lib/easybackup

USER 10001:10001
WORKDIR /var/lib/easybackup
EXPOSE 8080

# The health endpoint answers 200 when healthy or degraded and 503 when the scheduler loop has stalled; busybox
# wget exits non-zero on 503. It checks the default port: if the config moves monitoring.health_check, override
# it with `docker run --health-cmd`. A `once` container serves no HTTP, so disable it there (--no-healthcheck).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["wget", "-q", "-T", "4", "-O", "/dev/null", "http://127.0.0.1:8080/health"]

# SIGTERM stops scheduling and waits timeout.shutdown_grace (default 60s) for running backups before killing
# them: give the container more than that (`docker stop -t 90`, compose stop_grace_period: 90s,
# terminationGracePeriodSeconds: 90), or the runtime's SIGKILL cuts the clean abort short.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/sbin/tini", "--", "easybackup"]
CMD ["run"]

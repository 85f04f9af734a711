# idemd and idemctl in a slim Debian 12 image.
#
#   docker build -t idem .
#   docker run --rm --entrypoint idemctl -e IDEM_POSTGRES_URL=postgresql://... idem migrate
#   docker run -e IDEM_POSTGRES_URL=postgresql://... -p 127.0.0.1:50051:50051 idem
#
# idemd takes its settings from IDEM_* environment variables (IDEM_POSTGRES_URL,
# IDEM_LISTEN, IDEM_METRICS_LISTEN, ...) or from flags after the image name.
# docker-compose.yml runs it with PostgreSQL; scripts/check-image builds this
# file with podman and runs the image's idemd, since no Docker engine runs here.
#
# BASE_IMAGE is the Debian 12 image both stages start from; check-image passes
# a local one made with debootstrap.
ARG BASE_IMAGE=debian:bookworm

FROM ${BASE_IMAGE} AS build
# Build-only packages: no PostgreSQL server, Python or Node in this stage.
COPY scripts/install-deps /tmp/install-deps
RUN /tmp/install-deps --build-only && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Parallel compile jobs (check-image lowers it on a shared machine).
ARG BUILD_JOBS=2
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release >/dev/null \
 && cmake --build /build -j"${BUILD_JOBS}" --target idemd idemctl unit_tests \
 && /build/tests/unit/unit_tests --gtest_brief=1 \
 && install -D -s -m 0755 -t /out /build/server/idemd /build/server/idemctl

FROM ${BASE_IMAGE}
# Runtime libraries only; the image's user is idem (uid and gid 10001).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc++1.51 libprotobuf32 libpqxx-6.4 libpq5 libgoogle-glog0v6 \
      libgflags2.2 libabsl20220623 libssl3 libcpp-httplib0.11 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 idem \
 && useradd --uid 10001 --gid idem --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin idem
COPY --from=build /out/idemd /out/idemctl /usr/local/bin/
USER 10001:10001
ENV IDEM_LISTEN=0.0.0.0:50051 \
    IDEM_METRICS_LISTEN=0.0.0.0:9464
# 50051: gRPC (Idempotency, health, reflection); 9464: Prometheus /metrics.
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
  CMD ["idemctl", "health", "127.0.0.1:50051"]
# idemd reads every flag from IDEM_<FLAG> (IDEM_POSTGRES_URL, IDEM_LISTEN,
# ...); arguments after the image name are passed on as flags.
ENTRYPOINT ["idemd"]

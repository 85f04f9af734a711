# idemd and idemctl in a slim Debian 12 image.
#   docker build -t idem .
#   docker run -e IDEM_POSTGRES_URL=postgresql://... -p 50051:50051 idem
#   docker run --entrypoint idemctl idem migrate --postgres=postgresql://...
# Not yet built in CI here (no Docker engine); a later issue adds a podman
# check.
ARG BASE_IMAGE=debian:bookworm

FROM ${BASE_IMAGE} AS build
COPY scripts/install-deps /tmp/install-deps
RUN /tmp/install-deps && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release \
 && cmake --build /build -j2 --target idemd idemctl unit_tests \
 && /build/tests/unit/unit_tests --gtest_brief=1

FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc++1.51 libprotobuf32 libpqxx-6.4 libpq5 libgoogle-glog0v6 \
      libgflags2.2 libabsl20220623 libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home idem
COPY --from=build /build/server/idemd /build/server/idemctl /usr/local/bin/
USER idem
EXPOSE 50051
ENTRYPOINT ["idemd", "--listen=0.0.0.0:50051"]

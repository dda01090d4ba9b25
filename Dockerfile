# Multi-stage build: a Rust toolchain builds the binary; the runtime image holds only
# the binary, the pipelines and a CA bundle.
FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin lookout && strip target/release/lookout

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 lookout
WORKDIR /app
COPY --from=build /src/target/release/lookout /usr/local/bin/lookout
COPY pipelines ./pipelines
COPY --chown=lookout models ./models
USER lookout
# /metrics, /health, /ready when run with LOOKOUT_HTTP=0.0.0.0:9464 (loopback by default).
EXPOSE 9464
ENTRYPOINT ["lookout"]
CMD ["run", "--pipeline", "/app/pipelines/default"]

# paywait: order-payment timeout daemon.
#
#   docker build -t paywait .
#   docker run --rm paywait --help
#
# The image runs `paywait run` by default; `migrate`, `topology`, `place`,
# `pay` and `show` are its other commands. Configure it with environment
# variables (AMQP_URL, DATABASE_URL, PAYWAIT_<SECTION>__<KEY>) or mount a TOML
# file and set PAYWAIT_CONFIG.

FROM rust:1.88-slim-bookworm AS builder
WORKDIR /build

# Build the dependencies alone first, against placeholder sources, so that
# editing src/ does not rebuild them. Cargo reads every workspace member's
# manifest; the benchmark and the test kit are not built.
COPY Cargo.toml Cargo.lock ./
COPY bench/Cargo.toml ./bench/
COPY testkit/Cargo.toml ./testkit/
RUN mkdir -p src bench/src testkit/src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > bench/src/main.rs \
    && touch testkit/src/lib.rs \
    && cargo build --release --locked --package paywait \
    && rm -rf src

# migrations/ is embedded into the binary at compile time.
COPY migrations ./migrations
COPY src ./src
# COPY keeps the files' original times, which may be older than the
# placeholder build: touch the crate roots so cargo rebuilds the crate.
RUN touch src/lib.rs src/main.rs \
    && cargo build --release --locked --package paywait \
    && install -D -m 0755 target/release/paywait /out/paywait


FROM debian:bookworm-slim

# curl is for container health checks against /readyz.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 paywait \
    && useradd --system --uid 10001 --gid paywait --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin paywait

COPY --from=builder /out/paywait /usr/local/bin/paywait

# The built-in default listens on loopback only, which is unreachable from
# outside the container.
ENV PAYWAIT_HTTP__LISTEN=0.0.0.0:9464
EXPOSE 9464

USER 10001:10001
ENTRYPOINT ["paywait"]
CMD ["run"]

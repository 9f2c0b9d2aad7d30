# syntax=docker/dockerfile:1.7
# A small static image of the hubspot-operator binary (controller, receiver, emulator, dev, crd).
#   docker build -t hubspot-operator:dev .
# The build stage links against musl, so the binary needs no libc; rusqlite's bundled SQLite and
# ring's assembly are compiled by musl-gcc.

FROM rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CARGO_TERM_COLOR=never
WORKDIR /src
COPY . .
# The registry and target directories are BuildKit cache mounts, so rebuilds reuse downloaded
# crates and compiled dependencies. The target directory is not part of the image: the binary
# is copied out of it within the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --target x86_64-unknown-linux-musl --bin hubspot-operator \
    && cp target/x86_64-unknown-linux-musl/release/hubspot-operator /hubspot-operator

# distroless/static: CA certificates, /etc/passwd with `nonroot` (65532), no shell, no libc.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /hubspot-operator /usr/local/bin/hubspot-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/hubspot-operator"]

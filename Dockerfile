# Gig'MCP gateway image. Multi-stage; every base image is a build argument, so it builds where
# no registry is reachable (see docs/operations.md: a base made with mmdebstrap, imported
# with podman).
#
#   BINARIES=build    (default) compile in the builder stage: needs a Rust image as BUILDER.
#   BINARIES=prebuilt copy gigmcp, bootstrap and (optionally) servers from dist/ in the build
#                     context, built on the host with `cargo build --release` and `make
#                     bootstrap` against the same Debian release as BASE (glibc must match).
#
# Run it with the options the sandbox needs inside a container (bubblewrap makes namespaces
# and mounts a fresh /proc; nftables needs CAP_NET_ADMIN):
#   --security-opt seccomp=unconfined --security-opt apparmor=unconfined
#   --security-opt unmask=/proc/* --cap-add NET_ADMIN
# `gigmcp doctor` in the container says which one is missing.

ARG BUILDER=docker.io/library/rust:1.95-bookworm
ARG BASE=docker.io/library/debian:bookworm-slim
ARG BINARIES=build

FROM ${BUILDER} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p gigmcp -p echo-mcp -p fetch-mcp \
 && RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked -p gig-bootstrap \
      --target "$(rustc -vV | sed -n 's/^host: //p')" --target-dir target/static \
 && mkdir -p /dist \
 && cp target/release/gigmcp target/release/echo-mcp target/release/fetch-mcp /dist/ \
 && cp target/static/*/release/bootstrap /dist/

FROM scratch AS prebuilt
COPY dist/ /dist/

FROM ${BINARIES} AS binaries

FROM ${BASE}
# bubblewrap runs every server's sandbox; nft builds the sandbox firewall. A base made with
# these already in it (mmdebstrap --include=...) needs no package mirror here.
RUN if ! command -v bwrap >/dev/null || ! command -v nft >/dev/null; then \
      apt-get update \
      && apt-get install -y --no-install-recommends bubblewrap nftables ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi
COPY --from=binaries /dist/ /usr/local/lib/gigmcp/
# gigmcp finds `bootstrap` next to itself; /usr/local/lib is reachable by `nobody`, which
# bubblewrap runs as.
RUN chmod 0755 /usr/local/lib/gigmcp /usr/local/lib/gigmcp/* \
 && ln -s /usr/local/lib/gigmcp/gigmcp /usr/local/bin/gigmcp \
 && mkdir -m 0711 /var/lib/gigmcp
ENV GIG_DATA_DIR=/var/lib/gigmcp \
    GIG_LISTEN=0.0.0.0:8080
VOLUME /var/lib/gigmcp
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/lib/gigmcp/gigmcp"]
CMD ["serve"]

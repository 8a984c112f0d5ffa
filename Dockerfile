# Ferry images, built from one Dockerfile:
# - the default target: `ferry` (the sidecar proxy, taking Envoy's arguments) and
#   `ferry-iptables` (the init container's traffic capture) on a slim base;
# - `--target istio-proxy`: Istio's own proxy image with Ferry in place of its Envoy binary
#   (`/usr/local/bin/envoy`), so that pilot-agent starts Ferry exactly as it starts Envoy.
#   `--build-arg ISTIO_PROXY_IMAGE=...` picks the istio-proxy image (and version) to start from.
ARG ISTIO_PROXY_IMAGE=istio/proxyv2:1.28.0

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p ferry -p ferry-iptables \
 && install -D target/release/ferry /out/usr/local/bin/ferry \
 && install -D target/release/ferry-iptables /out/usr/local/bin/ferry-iptables

FROM ${ISTIO_PROXY_IMAGE} AS istio-proxy
COPY --from=build /out/usr/local/bin/ferry /usr/local/bin/envoy
COPY --from=build /out/usr/local/bin/ferry-iptables /usr/local/bin/ferry-iptables

FROM debian:bookworm-slim AS ferry
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates iptables iproute2 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1337 istio-proxy \
 && useradd --uid 1337 --gid 1337 --no-create-home --shell /usr/sbin/nologin istio-proxy
COPY --from=build /out/ /
USER 1337:1337
ENTRYPOINT ["/usr/local/bin/ferry"]
CMD ["--help"]

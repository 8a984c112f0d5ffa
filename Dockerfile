# Ferry image: `ferry` (the sidecar proxy, taking Envoy's arguments) and `ferry-iptables` (the
# init container's traffic capture). It can stand in for the proxy binary of an istio-proxy image.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p ferry -p ferry-iptables \
 && install -D target/release/ferry /out/usr/local/bin/ferry \
 && install -D target/release/ferry-iptables /out/usr/local/bin/ferry-iptables

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates iptables iproute2 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1337 istio-proxy \
 && useradd --uid 1337 --gid 1337 --no-create-home --shell /usr/sbin/nologin istio-proxy
COPY --from=build /out/ /
USER 1337:1337
ENTRYPOINT ["/usr/local/bin/ferry"]
CMD ["--help"]

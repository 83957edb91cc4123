# Minimal image: static-enough release build on Debian, run as non-root on distroless.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin chamilo-scim-proxy

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/chamilo-scim-proxy /chamilo-scim-proxy
USER 65532:65532
EXPOSE 8080 9090
# Exec form so the binary is PID 1 and receives SIGTERM directly.
ENTRYPOINT ["/chamilo-scim-proxy"]
CMD ["run", "--config", "/etc/chamilo-scim-proxy/config/config.toml"]

# syntax=docker/dockerfile:1
# gitprovider-operator image: a static-ish Rust binary on distroless, running as non-root.
#
#   docker build -t ghcr.io/gitprovider-dev/gitprovider-operator:0.1.0 .
#
# The build command below is the one tests/chart/test_dockerfile.py runs (outside Docker).
# .github/workflows/release.yml builds it for linux/amd64 and linux/arm64 (the arm64 stage runs
# under QEMU): the target cache is per platform so the two builds never share artefacts.

FROM rust:1-bookworm AS builder
ARG TARGETPLATFORM
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,id=gpo-target-${TARGETPLATFORM} \
    cargo build --release --locked --bin gitprovider-operator \
    && install -D -m 0755 target/release/gitprovider-operator /out/gitprovider-operator

# cc-debian12 brings glibc, libgcc and CA certificates (for verifying provider TLS); no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="gitprovider-operator" \
      org.opencontainers.image.description="Kubernetes operator for Git provider connections (GitProviderConnection)"
COPY --from=builder /out/gitprovider-operator /gitprovider-operator
USER 65532:65532
# 8443: admission webhook (HTTPS), 8080: /metrics, /healthz, /readyz
EXPOSE 8443 8080
ENTRYPOINT ["/gitprovider-operator"]
CMD ["run"]

# Both binaries from one multi-stage build; pick one with --target. Build context: the
# repository root.
#   docker build --target ai-service -t chat/ai-service .
#   docker build --target ws-gateway -t chat/ws-gateway .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ai-service -p ws-gateway \
 && cp target/release/ai-service target/release/ws-gateway /usr/local/bin/

# What both images share: a non-root user, curl for the healthcheck, /data for SQLite.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home app \
 && mkdir /data && chown app /data
USER app
# /data holds the SQLite file; a named volume mounted there starts out owned by app.
VOLUME /data
ENV DATABASE_URL=sqlite:///data/chat.db HOST=0.0.0.0 LOG_LEVEL=info

FROM runtime AS ai-service
COPY --from=build /usr/local/bin/ai-service /usr/local/bin/ai-service
ENV PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -sf http://127.0.0.1:8000/health || exit 1
ENTRYPOINT ["/usr/local/bin/ai-service"]

FROM runtime AS ws-gateway
COPY --from=build /usr/local/bin/ws-gateway /usr/local/bin/ws-gateway
ENV PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -sf http://127.0.0.1:8080/health || exit 1
ENTRYPOINT ["/usr/local/bin/ws-gateway"]

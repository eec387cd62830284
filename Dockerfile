# Both binaries and the NGINX front from one multi-stage build; pick one with --target. Build
# context: the repository root.
#   docker build --target ai-service -t chat/ai-service .
#   docker build --target ws-gateway -t chat/ws-gateway .   (serves the browser app at / too)
#   docker build --target nginx -t chat/nginx .             (nginx-lb.conf + the browser app)
# The browser app is built inside the image (frontend stage): no host build of frontend/dist.

# The browser app (React + Vite): frontend/dist, built from the lock file.
FROM node:20-bookworm-slim AS frontend
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --no-audit --no-fund
COPY frontend/ ./
RUN npm run build

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

# Healthchecks ask /health/ready: 200 when the node can serve, 503 when a critical component is
# down or the node is draining after SIGTERM.
FROM runtime AS ai-service
COPY --from=build /usr/local/bin/ai-service /usr/local/bin/ai-service
ENV PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -sf http://127.0.0.1:8000/health/ready || exit 1
ENTRYPOINT ["/usr/local/bin/ai-service"]

FROM runtime AS ws-gateway
COPY --from=build /usr/local/bin/ws-gateway /usr/local/bin/ws-gateway
# The gateway serves STATIC_DIR at / (index.html for unknown paths).
COPY --from=frontend /src/frontend/dist /app/web
ENV PORT=8080 STATIC_DIR=/app/web
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -sf http://127.0.0.1:8080/health/ready || exit 1
ENTRYPOINT ["/usr/local/bin/ws-gateway"]

# NGINX in front of the multi-node stack: nginx-lb.conf as written (gateways ws-gateway-1..3,
# AI nodes ai-service-1..3, port 8080) and the browser app at /.
FROM nginx:1.25-alpine AS nginx
COPY nginx-lb.conf /etc/nginx/nginx.conf
COPY --from=frontend /src/frontend/dist /usr/share/nginx/html
EXPOSE 8080
# NGINX itself (the static app), not the nodes behind it: they have their own healthchecks.
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD wget -q -O /dev/null http://127.0.0.1:8080/ || exit 1

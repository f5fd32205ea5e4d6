# ssehub: one hub process per container; scale out with several containers sharing Redis.
# It listens on all interfaces, so it needs a key: `docker run -e SSEHUB_JWT_SECRET=... ssehub`
# (or SSEHUB_JWT_PUBLIC_KEY_FILE / SSEHUB_JWT_JWKS_FILE). Without one it refuses to start, unless
# SSEHUB_OPEN_ACCESS=true says that anyone reaching the port may read and publish everything.
# deploy/compose.yaml runs two of these with Redis behind nginx.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    SSEHUB_HOST=0.0.0.0 \
    SSEHUB_PORT=8000 \
    SSEHUB_LOG_FORMAT=json \
    SSEHUB_DATABASE_URL=sqlite+aiosqlite:////data/ssehub.db

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /data --create-home ssehub

USER ssehub
WORKDIR /data
EXPOSE 8000
# docker stop sends SIGTERM: streams end at once and clients resume on another hub.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s \
    CMD python -c "import os,urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ['SSEHUB_PORT'], timeout=2)" || exit 1
CMD ["ssehub", "serve"]

# StateRelay in a container: one process, data in the /data volume, port 8080.
#
#   docker build -t staterelay .
#   docker run -d --name staterelay -p 8080:8080 -v staterelay-data:/data staterelay
#
# Put a TLS proxy in front for anything beyond your LAN (Caddyfile.example,
# docker-compose.example.yml) and set STATERELAY_SERVER_PUBLIC_URL to its https URL.

# The base is pinned to one patch release of Python on one Debian release, and every
# dependency to the version the test suite passed with (constraints.txt, written by
# `python -m tests.constraints`): building the same commit again gives the same image.
# Bump the tag and regenerate the constraints together, then run the tests.

# --- build: a wheel from the source (the build tools stay out of the final image) --------
FROM python:3.11.17-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md MANIFEST.in config.example.yaml ./
COPY staterelay ./staterelay
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- run ------------------------------------------------------------------------------
FROM python:3.11.17-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STATERELAY_DATA_DIR=/data
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin staterelay \
    && mkdir -p /data \
    && chown staterelay:staterelay /data \
    && chmod 700 /data
# Optional extras, e.g. --build-arg EXTRAS=postgres,redis for the hosted layout.
ARG EXTRAS=""
COPY --from=build /wheels /wheels
COPY constraints.txt /wheels/constraints.txt
RUN pip install --no-cache-dir --constraint /wheels/constraints.txt /wheels/*.whl \
    && if [ -n "$EXTRAS" ]; then pip install --no-cache-dir --constraint /wheels/constraints.txt "staterelay[$EXTRAS]"; fi \
    && rm -rf /wheels
USER staterelay
VOLUME ["/data"]
EXPOSE 8080
# No curl in the slim image: Python asks /readyz (503 while the database is not ready).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('STATERELAY_SERVER_PORT', '8080') + '/readyz', timeout=4)"]
STOPSIGNAL SIGTERM
CMD ["staterelay", "serve", "--host", "0.0.0.0"]

# The Floorwatch bridge image (built by compose.yaml from the repository root).
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md* ./
COPY ext ext
COPY edge edge
COPY drivers drivers
COPY gateway gateway
COPY bridge bridge
# the wheel carries the compiled statistics core
RUN pip wheel --no-cache-dir --no-deps -w /wheels .

FROM python:3.11-slim-bookworm
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/floorwatch --shell /usr/sbin/nologin floorwatch \
    && install -d -o floorwatch -g floorwatch -m 0750 /var/lib/floorwatch /var/log/floorwatch
USER floorwatch
CMD ["floorwatch", "bridge", "--config", "/etc/floorwatch/bridge.toml"]

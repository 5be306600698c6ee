# Stand-in for redis:7.0-bookworm, built from Debian's packages (host_stack/docker_images.py).
# What docker-compose.yml uses of the official image: a server on 6379 reachable from other
# containers (protected mode off, as the official image), data in /data, `redis-cli` on PATH.
ARG DEBIAN_IMAGE=builditall/debian:bookworm
FROM ${DEBIAN_IMAGE}

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data && chown redis:redis /data

WORKDIR /data
VOLUME /data
EXPOSE 6379
# The redis user Debian's package creates; its uid is fixed when the image is built.
# hadolint ignore=DL3066
USER redis
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--dir", "/data"]

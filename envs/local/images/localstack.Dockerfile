# Stand-in for localstack/localstack, built from Debian trixie's Python 3.13 and PyPI
# (host_stack/docker_images.py): the same localstack-core and lock host mode runs
# (envs/local/localstack-requirements.txt), as a process in the container. What
# docker-compose.local.yml uses of the official image: the gateway on 4566, SERVICES,
# /_localstack/health and `curl` for the healthcheck.
ARG DEBIAN_IMAGE=builditall/debian:trixie
FROM ${DEBIAN_IMAGE}

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*

# Extra CA certificates for a network that inspects TLS (envs/local/ca-certificates/README.md).
COPY envs/local/ca-certificates/ /usr/local/share/ca-certificates/
RUN update-ca-certificates

COPY envs/local/localstack-requirements.txt /opt/localstack/requirements.txt
# --no-deps: the lock is complete (resolved as of localstack-core's release, as in host mode).
RUN python3 -m venv /opt/localstack/venv \
    && PIP_CERT=/etc/ssl/certs/ca-certificates.crt /opt/localstack/venv/bin/pip install \
        --no-cache-dir --no-deps --disable-pip-version-check -r /opt/localstack/requirements.txt

ENV GATEWAY_LISTEN=0.0.0.0:4566 \
    LOCALSTACK_VOLUME_DIR=/var/lib/localstack \
    PATH=/opt/localstack/venv/bin:$PATH
RUN mkdir -p /var/lib/localstack
EXPOSE 4566
CMD ["python", "-m", "localstack.runtime.main"]

# Stand-in for python:3.11-slim-bookworm, built from Debian's packages where no registry can be
# reached (host_stack/docker_images.py). What the project's Dockerfile uses of the official
# image: `python` and `pip` on PATH, pip allowed to install into the system Python, and the CA
# store. Debian bookworm's python3 is 3.11.2 (the official tag tracks the newest 3.11.x).
ARG DEBIAN_IMAGE=builditall/debian:bookworm
FROM ${DEBIAN_IMAGE}

# Unpinned on purpose: the base image fixes the Debian release, and the archive drops superseded
# versions, so a pin would break the build at the next security update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-pip python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s /usr/bin/python3 /usr/local/bin/python \
    && ln -s /usr/bin/pip3 /usr/local/bin/pip \
    && rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED

ENV LANG=C.UTF-8
CMD ["python3"]

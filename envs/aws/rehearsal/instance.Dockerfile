# Stand-in for the Airflow EC2 instance in the offline boot rehearsal (host_stack/ec2_rehearsal.py):
# a Debian machine with what Amazon Linux 2023 brings to the boot (bash, the AWS CLI v2, curl,
# coreutils), the docker CLI on the host engine's socket, and shims for what only AL2023 has:
# dnf (the engine is the host's), systemctl (no systemd in a container: the roll-out timer runs
# as a loop), cloud-init (runs the user data LocalStack holds for the instance). It sits on an
# --internal network with the emulated AWS endpoints only.
ARG DEBIAN_IMAGE=builditall/debian:bookworm
FROM ${DEBIAN_IMAGE}

# Unpinned Debian packages on purpose, as in the project's other images: the base fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends awscli docker.io curl ca-certificates gzip \
        procps util-linux \
    && rm -rf /var/lib/apt/lists/*

COPY envs/aws/rehearsal/shims/ /usr/local/bin/
# The AWS CLI finds the emulated endpoints through the shim at /usr/local/bin/aws; buckets by path.
COPY envs/aws/rehearsal/aws-config /root/.aws/config
COPY envs/aws/rehearsal/machine.env /etc/builditall/machine.env
ENTRYPOINT ["/usr/local/bin/cloud-init"]

# Stand-in for postgres:15-bookworm, built from Debian's packages (host_stack/docker_images.py).
# What docker-compose.yml uses of the official image: POSTGRES_USER / POSTGRES_PASSWORD /
# POSTGRES_DB initialise an empty data directory at /var/lib/postgresql/data, password
# (scram-sha-256) logins from other containers, and `pg_isready` on PATH.
ARG DEBIAN_IMAGE=builditall/debian:bookworm
FROM ${DEBIAN_IMAGE}

# No cluster at install time: the entrypoint makes one in the volume, as the official image does.
# hadolint ignore=DL3008
RUN mkdir -p /etc/postgresql-common \
    && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql

ENV LANG=C.UTF-8 \
    PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
COPY envs/local/images/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
VOLUME /var/lib/postgresql/data
EXPOSE 5432
# Fast shutdown, as the official image: clients are disconnected, the data is consistent.
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
CMD ["postgres"]

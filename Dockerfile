# The image of every Airflow service of docker-compose.yml and, as target `local`, of the local
# overlay's Spark master and worker. Python + a JRE + exactly the pinned locks: Airflow, its
# providers, the jobs' libraries and pyspark (whose wheel brings spark-submit and spark-class)
# all come from requirements.txt (+ requirements-docker.txt: Celery, Postgres, FAB); no version
# is written here. Build: `docker compose build` (README, "Laptop with Docker").

# The Python minor version is noxfile.py's PYTHON (tests/compose checks it). Bookworm, not
# trixie: it is the Debian release that still ships OpenJDK 17, the JRE Spark 4 runs on here.
# PYTHON_IMAGE is a setting for machines without Docker Hub: a registry mirror's name, or the
# stand-in `nox -s docker_images` builds from Debian's packages (envs/local/images/).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE} AS airflow

# Unpinned Debian packages on purpose: the archive drops superseded versions, so a pin would
# break the build at the next security update; the base image tag fixes the release.
# The user is Airflow's own image's (uid 50000, gid 0), so volumes behave the same.
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless curl ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 50000 --gid 0 --home-dir /opt/airflow --create-home airflow

# Extra CA certificates for a network that inspects TLS (envs/local/ca-certificates/README.md);
# pip verifies against the system store they join. Without any, this changes nothing.
COPY envs/local/ca-certificates/ /usr/local/share/ca-certificates/
RUN update-ca-certificates

ENV AIRFLOW_HOME=/opt/airflow \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYSPARK_PYTHON=python3

# The locks are complete (uv, universal): --no-deps installs exactly them, as noxfile.py does.
# requirements.txt stays in /opt/pipeline: the job artifact pins the EMR bootstrap from it.
COPY requirements.txt requirements-docker.txt /opt/pipeline/
RUN PIP_CERT=/etc/ssl/certs/ca-certificates.crt pip install --no-cache-dir --no-deps \
        -r /opt/pipeline/requirements.txt -r /opt/pipeline/requirements-docker.txt
# pyspark's zips, on the path of every Spark Python process, get precompiled bytecode too (pip
# compiles only site-packages): host_stack/bytecode.py, as noxfile.py does for host mode.
COPY host_stack/bytecode.py /tmp/bytecode.py
RUN python /tmp/bytecode.py && rm /tmp/bytecode.py

USER 50000
WORKDIR /opt/airflow
ENTRYPOINT ["airflow"]
CMD ["version"]


# The offline rehearsal's EMR emulator only (envs/aws/docker-compose.rehearsal.yml): the
# production image plus moto's EMR backend, which the emulator serves the EMR API with. Versions
# come from the dev lock (constraints), as in the pipeline virtualenv. Never deployed. Before
# `local`: the classic builder builds every stage up to its target.
FROM airflow AS emr-emulator
USER 0
COPY requirements-dev.txt /opt/pipeline/
RUN PIP_CERT=/etc/ssl/certs/ca-certificates.crt pip install --no-cache-dir \
        -c /opt/pipeline/requirements-dev.txt "moto[emr,s3,server]"
USER 50000


# Local overlay only: Spark with the S3A connector (hadoop-aws of the exact Hadoop version the
# pyspark wheel bundles, and the AWS SDK v2 bundle that Hadoop release was built against).
# Downloaded from Maven Central at build time, each jar checked against Maven's .sha1.
# S3A_CONNECTOR=none (a documented setting, for networks without Maven Central) builds without
# it: the jobs then read and write S3 through pyarrow, as host mode does, and their log says so
# (spark_jobs/common/storage.py chooses the backend by probing the JVM).
FROM airflow AS local
ARG S3A_CONNECTOR=maven
USER 0
COPY envs/local/s3a_jars.py /tmp/s3a_jars.py
RUN case "${S3A_CONNECTOR}" in \
        maven) python /tmp/s3a_jars.py --jars \
            "$(python -c 'import pyspark, os; print(os.path.dirname(pyspark.__file__))')/jars" ;; \
        none) echo "S3A_CONNECTOR=none: no S3A connector in this image; the jobs use pyarrow's S3 client" ;; \
        *) echo "S3A_CONNECTOR=${S3A_CONNECTOR}: expected maven or none" >&2; exit 2 ;; \
    esac \
    && rm /tmp/s3a_jars.py
USER 50000

#!/usr/bin/env bash
# EMR bootstrap action: install the Spark jobs' Python dependencies on every node, before Spark starts.
# Shipped in the job artifact (orchestration/artifact.py) and named by envs/aws/emr_cluster.json.
# Usage: install_job_deps.sh s3://<data bucket>/<artifact prefix>/requirements-emr.txt
set -euo pipefail

requirements_uri="${1:?usage: install_job_deps.sh s3://<bucket>/<prefix>/requirements-emr.txt}"
# The interpreter PySpark uses on EMR (spark-env PYSPARK_PYTHON in emr_cluster.json); emr-spark-8.0.0
# offers Python 3.11-3.13, and requirements-emr.txt is resolved for 3.11.
python_bin="${JOB_PYTHON:-/usr/bin/python3.11}"

requirements_file="$(mktemp)"
trap 'rm -f "$requirements_file"' EXIT
aws s3 cp --only-show-errors "$requirements_uri" "$requirements_file"
# Every file must match a hash of the lock (envs/aws/bootstrap/requirements-emr.txt), and only
# wheels: nothing is built, nothing unpinned comes along.
sudo "$python_bin" -m pip install --quiet --no-cache-dir --require-hashes --only-binary=:all: \
  --requirement "$requirements_file"
"$python_bin" -m pip check

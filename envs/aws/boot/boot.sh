#!/bin/bash
# The Airflow instance's boot and roll-out: one release (see orchestration/release.py) verified,
# loaded and started, with no build and no apt, pip or registry access.
#
#   boot.sh                 the instance's user data runs it at every boot (as root)
#   boot.sh --if-changed    the roll-out timer runs it: applies a release only when the digest
#                           in SSM Parameter Store is not the one running
#
# What it reads: /etc/builditall/stack.env (written by the user data from the stack's values)
# and, on a machine that is not an EC2 instance (the offline rehearsal), the optional
# /etc/builditall/machine.env. What it writes: the boot log, copied to
# s3://$LOGS_BUCKET/boot/<instance-id>/boot.log with status.json beside it, which the deploy
# waits for; on the first boot, the CloudFormation signal of the instance's CreationPolicy.
set -Eeuo pipefail

app=/opt/builditall
data=/var/lib/builditall
log=/var/log/builditall-boot.log
plugins=/usr/local/libexec/docker/cli-plugins
units=/etc/systemd/system
data_device=/dev/sdf
# The api-server's health as Airflow reports it; the same check the deploy's docs name.
health_url=http://localhost:8080/api/v2/monitor/health

exec >>"$log" 2>&1
step=start
digest=
say() { echo "$(date -u +%FT%TZ) $*"; }

# shellcheck source=/dev/null
. /etc/builditall/stack.env
if [ -f /etc/builditall/machine.env ]; then
    # shellcheck source=/dev/null
    . /etc/builditall/machine.env
fi
export AWS_DEFAULT_REGION="$REGION"
instance_id=$(cat /var/lib/cloud/data/instance-id)
boot_uri="s3://$LOGS_BUCKET/boot/$instance_id"

report() {
    # status.json and the whole log into the logs bucket: what the deploy reads.
    local state=$1 detail=${2:-}
    printf '{"instance": "%s", "release": "%s", "state": "%s", "step": "%s", "detail": "%s", "time": "%s"}\n' \
        "$instance_id" "$digest" "$state" "$step" "${detail//\"/\'}" "$(date -u +%FT%TZ)" \
        >/run/builditall-status.json
    aws s3 cp --only-show-errors "$log" "$boot_uri/boot.log" || say "could not upload the boot log"
    aws s3 cp --only-show-errors /run/builditall-status.json "$boot_uri/status.json" ||
        say "could not upload status.json"
}

signal() {
    # Only the first boot has a CreationPolicy waiting; later signals are refused, harmlessly.
    aws cloudformation signal-resource --stack-name "$STACK_NAME" \
        --logical-resource-id "$INSTANCE_LOGICAL_ID" --unique-id "$instance_id" \
        --status "$1" >/dev/null 2>&1 || say "no CloudFormation signal awaited ($1)"
}

fail() {
    trap - ERR
    say "FAILED at $step: $*"
    report failed "$*"
    signal FAILURE
    # The roll-out timer does not retry a refused release; a new digest (or a reboot) does.
    if [ -n "$digest" ]; then mkdir -p "$app/refused" && touch "$app/refused/$digest"; fi
    exit 1
}
trap 'fail "a command failed (exit $?); the lines above say which"' ERR

release_digest() {
    aws ssm get-parameter --name "$RELEASE_PARAMETER" --query Parameter.Value --output text
}

# --- the steps ---------------------------------------------------------------------------------

docker_engine() {
    step=docker_engine
    # Amazon Linux 2023's own package (its repositories are reached through the S3 endpoint).
    command -v docker >/dev/null || dnf install -y docker
    systemctl enable --now docker
    for _ in $(seq 30); do docker info >/dev/null 2>&1 && return; sleep 2; done
    fail "the Docker engine did not answer within 60 s (systemctl status docker)"
}

data_volume() {
    step=data_volume
    # Postgres lives on its own EBS volume (the stack retains it), so a new instance keeps the
    # Airflow history. Formatted once, when it has no file system yet.
    if mountpoint -q "$data"; then
        say "data volume: $data is mounted"
        return
    fi
    for _ in $(seq 60); do [ -b "$data_device" ] && break; sleep 5; done
    [ -b "$data_device" ] || fail "the data volume ($data_device) is not attached after 300 s"
    blkid "$data_device" >/dev/null || mkfs.xfs -q -L builditall-data "$data_device"
    mkdir -p "$data"
    grep -q "LABEL=builditall-data" /etc/fstab ||
        echo "LABEL=builditall-data $data xfs defaults,nofail 0 2" >>/etc/fstab
    mount "$data"
    say "data volume: $data_device mounted at $data"
}

blob() {
    # One file of the release, fetched by its sha256 and checked against it.
    local sha=$1 name=$2 dir=$3
    aws s3 cp --only-show-errors "s3://$DATA_BUCKET/releases/blobs/$sha" "$dir/$name" ||
        fail "release $digest: s3://$DATA_BUCKET/releases/blobs/$sha ($name) cannot be read"
    echo "$sha  $dir/$name" | sha256sum --check --strict --quiet ||
        fail "release $digest: $name does not match the manifest; refusing it"
}

fetch_release() {
    step=fetch_release
    local dir=$app/releases/$digest
    if [ -f "$dir/.verified" ]; then
        say "release $digest: already here"
        return
    fi
    local partial=$dir.partial
    rm -rf "$partial" && mkdir -p "$partial"
    local manifest="s3://$DATA_BUCKET/releases/$digest/SHA256SUMS"
    aws s3 cp --only-show-errors "$manifest" "$partial/SHA256SUMS" ||
        fail "release $digest: $manifest cannot be read (was it uploaded?)"
    local actual
    actual=$(sha256sum "$partial/SHA256SUMS" | cut -d' ' -f1)
    [ "$actual" = "$digest" ] ||
        fail "release $digest: its manifest has sha256 $actual; refusing a release that does not match its digest"
    local sha name
    # The images last, and only when they are not here already (load_images).
    while read -r sha name; do
        [ "$name" = images.tar.gz ] || blob "$sha" "$name" "$partial"
    done <"$partial/SHA256SUMS"
    mkdir -p "$partial/app"
    tar -xzf "$partial/source.tar.gz" -C "$partial/app"
    touch "$partial/.verified"
    mv "$partial" "$dir"
    say "release $digest: verified ($(wc -l <"$dir/SHA256SUMS") files)"
}

install_compose() {
    step=compose_cli
    install -D -m 0755 "$app/releases/$digest/docker-compose" "$plugins/docker-compose"
    docker compose version
}

load_images() {
    step=images
    local dir=$app/releases/$digest missing=0 pair
    # shellcheck source=/dev/null
    . "$dir/release.env"
    # RELEASE_IMAGES: "name|id ...". An image already here by id only needs its name again.
    for pair in $RELEASE_IMAGES; do
        if docker image inspect "${pair#*|}" >/dev/null 2>&1; then
            docker tag "${pair#*|}" "${pair%%|*}"
        else
            missing=1
        fi
    done
    if [ "$missing" = 0 ]; then
        say "images: all present"
        return
    fi
    say "images: fetching and loading images.tar.gz"
    blob "$(grep ' images.tar.gz$' "$dir/SHA256SUMS" | cut -d' ' -f1)" images.tar.gz "$dir"
    gzip -dc "$dir/images.tar.gz" | docker load
    rm -f "$dir/images.tar.gz"
    for pair in $RELEASE_IMAGES; do
        [ "$(docker image inspect --format '{{.Id}}' "${pair%%|*}")" = "${pair#*|}" ] ||
            fail "image ${pair%%|*} in images.tar.gz is not ${pair#*|}"
    done
}

write_env() {
    step=settings
    local dir=$app/releases/$digest
    umask 077
    {
        grep -v '^RELEASE_IMAGES=' "$dir/release.env"
        echo "COMPOSE_FILE=${COMPOSE_FILE:-docker-compose.yml:envs/aws/docker-compose.ec2.yml}"
        echo "PIPELINE_ENV=aws"
        echo "AWS_REGION=$REGION"
        echo "DATA_BUCKET=$DATA_BUCKET"
        echo "LOGS_BUCKET=$LOGS_BUCKET"
        echo "EMR_SUBNET_ID=$EMR_SUBNET_ID"
        echo "POSTGRES_DATA_DIR=$data/postgres"
        aws ssm get-parameters-by-path --path "$SECRETS_PATH" --with-decryption \
            --query 'Parameters[].[Name,Value]' --output text |
            while IFS=$'\t' read -r name value; do echo "${name##*/}=$value"; done
    } >"$dir/app/.env.partial"
    mv "$dir/app/.env.partial" "$dir/app/.env"
    umask 022
    grep -q '^POSTGRES_PASSWORD=' "$dir/app/.env" ||
        fail "no secrets under $SECRETS_PATH in SSM Parameter Store (the deploy creates them)"
    mkdir -p "$data/postgres"
}

start_airflow() {
    step=compose_up
    cd "$app/releases/$digest/app"
    docker compose up --detach --wait --wait-timeout 900 --no-build --pull never --remove-orphans ||
        { docker compose ps --all; docker compose logs --no-color --tail 40; fail "docker compose up --wait failed"; }
    step=health
    local health
    health=$(docker compose exec -T airflow-apiserver curl --fail --silent "$health_url") ||
        fail "the api-server does not answer $health_url"
    say "health: $health"
    for part in metadatabase scheduler; do
        echo "$health" | grep -Eq "\"$part\": ?\\{\"status\": ?\"healthy\"" ||
            fail "Airflow reports its $part unhealthy: $health"
    done
    ln -sfn "$app/releases/$digest/app" "$app/current"
}

install_rollout_timer() {
    step=rollout_timer
    install -D -m 0755 "$app/releases/$digest/app/envs/aws/boot/boot.sh" "$app/bin/boot.sh"
    install -D -m 0644 "$app/releases/$digest/app/envs/aws/boot/builditall-rollout.service" \
        "$units/builditall-rollout.service"
    install -D -m 0644 "$app/releases/$digest/app/envs/aws/boot/builditall-rollout.timer" \
        "$units/builditall-rollout.timer"
    systemctl daemon-reload
    systemctl enable --now builditall-rollout.timer
}

# --- one boot or roll-out ----------------------------------------------------------------------

step=release_digest
digest=$(release_digest) || fail "cannot read $RELEASE_PARAMETER from SSM Parameter Store"
if [ "${1:-}" = "--if-changed" ]; then
    running=$(readlink "$app/current" 2>/dev/null || true)
    [ "$running" = "$app/releases/$digest/app" ] && exit 0
    [ -e "$app/refused/$digest" ] && exit 0
fi
say "--- release $digest (${1:-boot})"
report starting
docker_engine
data_volume
fetch_release
install_compose
load_images
write_env
start_airflow
install_rollout_timer
step=healthy
say "--- release $digest is healthy"
report healthy
signal SUCCESS

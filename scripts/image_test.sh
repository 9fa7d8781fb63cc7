#!/usr/bin/env bash
# `make image-test`: build the one container image and prove both of its modes.
#
# These machines have no Docker engine and reach no container registry, so this uses Debian's
# podman/buildah (installed when missing), a debootstrapped base image (scripts/base_image.sh,
# cached), chroot-isolated builds and runc runs with host networking. Handler mode runs the
# image's awslambdaric against the local Runtime API (batglitch.standins.lambda_runtime) on the host.
#
# Usage: scripts/image_test.sh [all|build|smoke|e2e|lock]
#   all    (default) build, smoke, e2e
#   build  install the tools, make the base image if missing, build; report build time and size
#   smoke  CLI mode (--help) and a trivial handler through the Runtime API, as the image's user
#   e2e    one synthetic observation in LocalStack S3 through handler.app.process (handler mode)
#          and `batglitch process` (CLI mode, index from AWS_BATCH_JOB_ARRAY_INDEX); both must
#          find the same windows as the host
#   lock   rewrite requirements.lock: the runtime closure at the dev venv's tested versions
# Env: IMAGE, BASE_IMAGE, PY (host Python with batglitch installed),
#      PIP_CERT (CA bundle for pip in the build; default the host's, as a TLS-inspecting proxy
#      needs), LOCALSTACK_PORT (default 4566)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY=${PY:-$ROOT/.venv/bin/python}
# shellcheck source=/dev/null
. /etc/os-release
BASE_IMAGE=${BASE_IMAGE:-localhost/batglitch-base:$VERSION_CODENAME}
IMAGE=${IMAGE:-localhost/batglitch:dev}
ENDPOINT="http://127.0.0.1:${LOCALSTACK_PORT:-4566}"
# Explicit ulimits: podman's default nofile/nproc exceed this sandbox's hard limits (runc: "error
# setting rlimit type 7: operation not permitted"). runc: Debian's podman may pick crun otherwise.
RUN=(podman run --rm --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024
    --network host)

log() { echo "image-test: $*" >&2; }
die() {
    log "FAIL: $*"
    exit 1
}

ensure_tools() {
    local tool missing=()
    for tool in podman buildah debootstrap runc catatonit; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    ((${#missing[@]} == 0)) && return
    (($(id -u) == 0)) || die "missing ${missing[*]}: run as root (apt-get install, rootful podman)"
    log "installing podman buildah debootstrap runc catatonit"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman buildah debootstrap runc catatonit
}

lock() {
    local freeze report
    freeze=$(mktemp)
    report=$(mktemp)
    "$PY" -m pip freeze --exclude-editable >"$freeze"
    "$PY" -m pip install --dry-run --ignore-installed --quiet --report "$report" \
        --constraint "$freeze" "$ROOT[aws,swift]" awslambdaric
    "$PY" - "$report" >"$ROOT/requirements.lock" <<'EOF'
import json
import sys

installs = json.load(open(sys.argv[1]))["install"]
print("# Pins for the container image (pip constraints), from the dev venv's tested versions.")
print("# Regenerate after changing dependencies: scripts/image_test.sh lock")
pins = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in installs}
pins.pop("batglitch")
for name in sorted(pins):
    print(f"{name}=={pins[name]}")
EOF
    rm -f "$freeze" "$report"
    log "wrote $ROOT/requirements.lock ($(grep -c '==' "$ROOT/requirements.lock") pins)"
}

build() {
    ensure_tools
    "$ROOT/scripts/base_image.sh" "$BASE_IMAGE"
    [[ -f $ROOT/requirements.lock ]] ||
        die "no requirements.lock: run '$0 lock' (unpinned, pip backtracks for many minutes)"
    local cert=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt} tls=() start=$SECONDS
    if [[ -f $cert ]]; then
        tls=(--volume "$cert:/run/pip-ca.crt:ro" --build-arg PIP_CERT=/run/pip-ca.crt)
    fi
    buildah bud --isolation chroot --network host --layers "${tls[@]}" \
        --build-arg BASE_IMAGE="$BASE_IMAGE" --tag "$IMAGE" "$ROOT"
    log "built $IMAGE in $((SECONDS - start)) s: $(size_mb "$IMAGE") MB" \
        "(base $BASE_IMAGE $(size_mb "$BASE_IMAGE") MB)"
}

size_mb() { podman image inspect --format '{{.Size}}' "$1" | awk '{ printf "%.0f", $1 / 1e6 }'; }

# Events through the host's Runtime API to the image in handler mode; prints one JSON line each.
invoke() {
    local handler=$1 event=$2
    shift 2
    # --init: the runtime is then not PID 1, so the SIGTERM that ends it is not ignored.
    "$PY" -m batglitch.standins.lambda_runtime --timeout 300 --event "$event" -- \
        "${RUN[@]}" --init -e AWS_LAMBDA_RUNTIME_API "$@" "$IMAGE" "$handler"
}

# Fail with message $3 unless Python expression $2 holds for the JSON in $1 (bound to `r`).
check() {
    "$PY" -c 'import json, sys; r = json.loads(sys.argv[1]); sys.exit(not eval(sys.argv[2]))' \
        "$1" "$2" || die "$3: $1"
}

smoke() {
    local out tmp start=$SECONDS
    out=$("${RUN[@]}" "$IMAGE" --help) || die "CLI mode: batglitch --help failed"
    grep -q process <<<"$out" || die "CLI mode: --help does not list 'process'"
    log "CLI mode: batglitch --help ok"

    tmp=$(mktemp -d)
    cat >"$tmp/smoke.py" <<'EOF'
import os

import astropy
import numpy
import s3fs
import swifttools.swift_too  # writes ~/.cache: needs the writable HOME
import xarray
import zarr

import batglitch


def check(event, context):
    versions = {m.__name__: m.__version__ for m in (batglitch, numpy, zarr, xarray, astropy, s3fs)}
    return {"event": event, "uid": os.getuid(), "versions": versions}
EOF
    chmod -R a+rX "$tmp" # the image's user is not root
    out=$(invoke smoke.check '{"ping": "pong"}' -v "$tmp:/opt/smoke:ro" \
        -e PYTHONPATH=/var/task:/opt/smoke) || die "handler mode: smoke.check failed: $out"
    rm -rf "$tmp"
    check "$out" 'r["ok"] and r["result"]["event"] == {"ping": "pong"}' "handler mode: no echo"
    check "$out" 'r["result"]["uid"] != 0' "handler mode: runs as root"
    log "handler mode: awslambdaric -> local Runtime API ok: $out"
    log "smoke took $((SECONDS - start)) s"
}

e2e() {
    local started_localstack=0 run bucket=batglitch-image-test start=$SECONDS
    export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1
    export AWS_ENDPOINT_URL_S3=$ENDPOINT
    if ! curl -fsS --max-time 2 "$ENDPOINT/_localstack/health" >/dev/null 2>&1; then
        "$ROOT/scripts/localstack.sh" start
        started_localstack=1  # a LocalStack that was already up is left running
    fi
    if ((started_localstack)); then
        # shellcheck disable=SC2064  # expand ROOT now
        trap "'$ROOT/scripts/localstack.sh' stop" EXIT
    fi
    local s3=(-e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_DEFAULT_REGION
        -e AWS_ENDPOINT_URL_S3)
    run="s3://$bucket/run-$(date +%s)"

    # A synthetic observation and a one-entry manifest in S3; prints the handler's event and
    # the number of windows the host itself finds in it.
    local staged event host_windows out
    staged=$("$PY" - "$bucket" "$run" <<'EOF'
import dataclasses
import json
import sys

import boto3

from batglitch.store.archive import Archive
from batglitch.pipeline.plan import ObsEntry, write_manifest
from batglitch.pipeline.job import process_item
from batglitch.standins.synth import SynthSpec, event_file_bytes

bucket, run = sys.argv[1:]
s3 = boto3.client("s3")
if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
    s3.create_bucket(Bucket=bucket)
obsid = "00012345000"
key = f"{run.removeprefix(f's3://{bucket}/')}/obs/sw{obsid}bevshpo_uf.evt.gz"
data, _ = event_file_bytes(SynthSpec(obsid=obsid, duration=60.0, n_glitches=4, seed=5))
s3.put_object(Bucket=bucket, Key=key, Body=data)
entry = ObsEntry(obsid, (f"s3://{bucket}/{key}",), True, None, ())
write_manifest([entry], f"{run}/manifest.jsonl")
print(json.dumps({**dataclasses.asdict(entry), "store": f"{run}/lambda.zarr"}))
print(process_item(entry, Archive(f"{run}/host.zarr"), None).n_windows)
EOF
    ) || die "staging the synthetic observation in LocalStack failed"
    { read -r event && read -r host_windows; } <<<"$staged"
    ((host_windows > 0)) || die "the host found no windows in the synthetic observation"

    out=$(invoke handler.app.process "$event" "${s3[@]}") ||
        die "handler mode: handler.app.process failed: $out"
    check "$out" "r['ok'] and r['result']['n_windows'] == $host_windows" \
        "handler mode: the host found $host_windows windows"
    log "handler mode: handler.app.process ok: $out"

    out=$("${RUN[@]}" "${s3[@]}" -e AWS_BATCH_JOB_ARRAY_INDEX=0 "$IMAGE" \
        process --manifest "$run/manifest.jsonl" --store "$run/cli.zarr") ||
        die "CLI mode: batglitch process failed: $out"
    check "$out" "r['n_windows'] == $host_windows" "CLI mode: the host found $host_windows windows"
    log "CLI mode: batglitch process ok: $out"
    log "e2e took $((SECONDS - start)) s"
}

case "${1:-all}" in
all) build && smoke && e2e ;;
build | smoke | e2e | lock) "$1" ;;
*) die "usage: $0 [all|build|smoke|e2e|lock]" ;;
esac

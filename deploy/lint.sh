#!/usr/bin/env bash
# `make lint-deploy`: checks what ships in deploy/ with the tools operators run.
# A missing tool is installed (Debian's prometheus for promtool); if that is impossible the
# check fails under CI=true and is reported as skipped elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}

need() {  # need TOOL DEBIAN-PACKAGE
    command -v "$1" >/dev/null && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "lint-deploy: installing Debian's $2 (for $1)"
        apt-get install -y -q "$2" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "$2" >/dev/null; }
    fi
    command -v "$1" >/dev/null && return 0
    if [ "${CI:-}" = true ]; then
        echo "lint-deploy: $1 is missing and could not be installed (package $2)" >&2
        exit 1
    fi
    echo "lint-deploy: SKIPPED the $1 checks: $1 is missing (install Debian's $2)"
    return 1
}

"$BIN/yamllint" --strict deploy
"$BIN/hadolint" deploy/Dockerfile
if need docker-compose docker-compose; then
    export POSTGRES_PASSWORD=lint GRAFANA_ADMIN_PASSWORD=lint  # what an operator writes in .env
    docker-compose -f deploy/compose/docker-compose.yml config -q
    docker-compose -f deploy/compose/docker-compose.yml --profile production config -q
    NW_CONFIG_FILE=./newswatch-demo.yaml docker-compose -f deploy/compose/docker-compose.yml --profile demo config -q
fi
if need promtool prometheus; then
    promtool check config deploy/prometheus/prometheus.yml
    promtool check rules deploy/prometheus/rules/*.yml
    promtool test rules deploy/prometheus/tests/*.yml
fi
if need amtool prometheus-alertmanager; then
    amtool check-config deploy/alertmanager/alertmanager.yml
fi
if need kubectl kubernetes-client; then
    rendered=$(mktemp -d)
    trap 'rm -rf "$rendered"' EXIT
    for overlay in deploy/k8s/overlays/*/; do
        name=$(basename "$overlay")
        kubectl kustomize "$overlay" > "$rendered/$name.yaml"
        "$BIN/kubernetes-validate" --strict --quiet "$rendered/$name.yaml"
        echo "k8s overlay $name: rendered and valid"
    done
fi
# Every metric in the dashboard and the rules is exported; compose and Kubernetes settings load.
"$BIN/pytest" -q -p no:cacheprovider tests/unit/test_deploy.py
echo "lint-deploy: all checks passed"

#!/usr/bin/env bash
# Lint the Dockerfile, lint the helm chart, and render it with the default and the
# production-like values through a strict schema validator. Installs its tools from
# nothing into ignored folders: hadolint and kubernetes-validate into .venv (pyproject's
# dev extras), helm into .tools/bin from its Go module (built once: about 3 minutes on
# 2 cores; kept while its version stamp matches). Exit non-zero on any problem.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"

HELM_VERSION=v3.22.0
# The chart's floor (Chart.yaml kubeVersion) and the newest schemas kubernetes-validate has.
KUBE_VERSIONS=(1.27.0 1.37.0)
VALUES_FILES=("" helm/ci/production-values.yaml)
TOOLS="$ROOT/.tools/bin"
HELM="$TOOLS/helm"
PY=.venv/bin/python

step() { printf '\n== deploy-check: %s\n' "$*" >&2; }

step "tools"
bash scripts/bootstrap.sh dev
mkdir -p "$TOOLS"
if [ ! -x "$HELM" ] || [ "$(cat "$HELM.version" 2>/dev/null)" != "$HELM_VERSION" ]; then
    # The machine's Go lives in /usr/local/go; a non-login shell may not have it on PATH.
    command -v go >/dev/null || PATH="$PATH:/usr/local/go/bin"
    command -v go >/dev/null || { echo "deploy-check: go is needed to build helm" >&2; exit 1; }
    echo "deploy-check: building helm $HELM_VERSION with go install (minutes, once)" >&2
    rm -f "$HELM.version"
    GOBIN="$TOOLS" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    echo "$HELM_VERSION" > "$HELM.version"
fi
echo "deploy-check: $(.venv/bin/hadolint --version), helm $(cat "$HELM.version")," \
    "kubernetes-validate $("$PY" -c 'import kubernetes_validate.version as v; print(v.__version__)')" >&2

step "hadolint Dockerfile"
.venv/bin/hadolint --failure-threshold info Dockerfile

for values in "${VALUES_FILES[@]}"; do
    label="${values:-default values}"
    args=()
    [ -n "$values" ] && args=(--values "$values")
    step "helm lint --strict ($label)"
    "$HELM" lint --strict helm "${args[@]}" --kube-version "${KUBE_VERSIONS[0]}"
    for kube in "${KUBE_VERSIONS[@]}"; do
        step "helm template ($label, Kubernetes $kube) | validate --strict"
        # Render to a variable first: a failed render must fail here, not hide in a pipe.
        rendered="$("$HELM" template availability helm "${args[@]}" --kube-version "$kube")"
        printf '%s\n' "$rendered" |
            "$PY" scripts/validate_manifests.py --kubernetes-version "$kube" \
                --label "$label, Kubernetes $kube"
    done
done
step "ok"

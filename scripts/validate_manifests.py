"""Validate rendered Kubernetes manifests (from stdin) strictly, offline.

Built-in kinds are checked with kubernetes-validate's bundled OpenAPI schemas, strict:
an unknown field fails. kubernetes-validate only warns when it has no schema for a kind,
which would let a typo in an apiVersion pass, so here a kind without a schema fails unless
this file carries a schema for it: the chart's one custom resource, the Prometheus
Operator's ServiceMonitor, is checked against the subset of its CRD that the chart uses
(extend CRD_SCHEMAS when the chart uses more of it).

    helm template ... | python scripts/validate_manifests.py --kubernetes-version 1.27 ...
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_DURATION = {
    "type": "string",
    # The CRD's Duration: units from years down to milliseconds, e.g. 30s or 1m30s.
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?"
    r"(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
_RELABEL = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "action": {
            "enum": [
                "replace",
                "keep",
                "drop",
                "hashmod",
                "labelmap",
                "labeldrop",
                "labelkeep",
                "lowercase",
                "uppercase",
                "keepequal",
                "dropequal",
            ]
        },
        "sourceLabels": {"type": "array", "items": {"type": "string"}},
        "separator": {"type": "string"},
        "targetLabel": {"type": "string"},
        "regex": {"type": "string"},
        "modulus": {"type": "integer"},
        "replacement": {"type": "string"},
    },
}
# monitoring.coreos.com/v1 ServiceMonitor: the fields of the Prometheus Operator's CRD that
# the chart renders, with their types from that CRD; anything else is refused.
SERVICE_MONITOR = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "namespace": {"type": "string"},
                "labels": _STRING_MAP,
                "annotations": _STRING_MAP,
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "jobLabel": {"type": "string"},
                "targetLabels": {"type": "array", "items": {"type": "string"}},
                "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": _STRING_MAP,
                        "matchExpressions": {"type": "array", "items": {"type": "object"}},
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "targetPort": {"type": ["string", "integer"]},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION,
                            "honorLabels": {"type": "boolean"},
                            "relabelings": {"type": "array", "items": _RELABEL},
                            "metricRelabelings": {"type": "array", "items": _RELABEL},
                        },
                    },
                },
            },
        },
    },
}
CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
}


def problems_of(doc: dict[str, Any], versions: list[str]) -> list[str]:
    kind, api_version = doc.get("kind"), doc.get("apiVersion")
    if not isinstance(kind, str) or not isinstance(api_version, str):
        return ["a document without kind or apiVersion"]
    crd = CRD_SCHEMAS.get((api_version, kind))
    if crd is not None:
        found = sorted(jsonschema.Draft202012Validator(crd).iter_errors(doc), key=str)
        return [f"{'.'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in found]
    problems = []
    for version in versions:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path) or "(root)"
            problems.append(f"kubernetes {version}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(
                f"kubernetes {version}: no schema for {api_version} {kind}"
                " (a wrong apiVersion, or a custom resource to add to CRD_SCHEMAS)"
            )
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--kubernetes-version",
        "-k",
        action="append",
        required=True,
        help="validate against this Kubernetes version (repeatable)",
    )
    parser.add_argument("--label", default="stdin", help="what the manifests are, for messages")
    args = parser.parse_args()
    docs = [doc for doc in yaml.safe_load_all(sys.stdin) if doc]
    if not docs:
        print(f"validate: {args.label}: no manifests on stdin", file=sys.stderr)
        return 1
    failed = 0
    seen: set[tuple[str, str]] = set()
    for doc in docs:
        name = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
        identity = (str(doc.get("kind")), name)
        problems = problems_of(doc, args.kubernetes_version)
        if identity in seen:
            problems.append("rendered twice")
        seen.add(identity)
        for problem in problems:
            print(f"validate: {args.label}: {name}: {problem}", file=sys.stderr)
        failed += bool(problems)
    kinds = ", ".join(sorted({str(doc.get("kind")) for doc in docs}))
    verdict = f"{failed} of {len(docs)} failed" if failed else f"{len(docs)} valid"
    versions = ", ".join(args.kubernetes_version)
    print(f"validate: {args.label}: {verdict} against Kubernetes {versions} ({kinds})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

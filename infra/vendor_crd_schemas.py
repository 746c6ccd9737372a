"""Regenerate ``infra/schemas/*.schema.json`` from KubeRay's CRD files (maintainer tool, not run by tests).

Usage: ``python -m infra.vendor_crd_schemas ray.io_rayclusters.yaml ray.io_rayjobs.yaml`` with the CRD files of the
KubeRay release the cluster runs (``ray-operator/config/crd/bases/`` in the KubeRay repository, tag v1.7.0 for the
vendored copies). Takes the storage version's ``openAPIV3Schema.spec`` and keeps it small enough to vendor:

- every Pod ``template`` subtree becomes a marker (``x-laioncele-podtemplate``): ``infra.validate`` checks those
  against the Kubernetes ``PodTemplateSpec`` schema bundled in ``kubernetes-validate`` instead;
- the ``status`` subtree is dropped (written by the operator, never by us);
- objects with declared properties get ``additionalProperties: false`` (what ``kubectl --validate=strict`` does:
  a misspelt field is an error instead of being pruned silently by the API server).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
POD_TEMPLATE_MARKER = "x-laioncele-podtemplate"


def _is_pod_template(key: str, node: dict[str, Any]) -> bool:
    props = node.get("properties", {})
    return key in ("template", "submitterPodTemplate") and "spec" in props and "metadata" in props


def prune(node: Any, key: str = "") -> Any:
    if isinstance(node, list):
        return [prune(item) for item in node]
    if not isinstance(node, dict):
        return node
    if isinstance(node.get("properties"), dict) and _is_pod_template(key, node):
        return {"type": "object", POD_TEMPLATE_MARKER: True}
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k == "description":
            continue
        if k == "properties":
            out[k] = {name: prune(sub, name) for name, sub in v.items()}
        else:
            out[k] = prune(v, k)
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def vendor(crd_path: Path) -> Path:
    crd = next(doc for doc in yaml.safe_load_all(crd_path.read_text()) if doc)
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    spec_schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    kind = crd["spec"]["names"]["kind"]
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"{kind} {crd['spec']['group']}/{version['name']} (spec subset)",
        "x-source": f"{crd_path.name} (KubeRay CRD, controller-gen output); status and pod templates pruned",
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": f"{crd['spec']['group']}/{version['name']}"},
            "kind": {"const": kind},
            "metadata": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}},
            },
            "spec": prune(spec_schema, "spec"),
        },
        "additionalProperties": False,
    }
    out = SCHEMA_DIR / f"{kind.lower()}.schema.json"
    out.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
    return out


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(vendor(Path(arg)))

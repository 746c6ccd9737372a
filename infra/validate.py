"""Validate the deployment manifests offline: ``python -m infra.validate [FILE ...]`` (default: all of infra/).

- KubeRay ``RayCluster`` / ``RayJob``: the CRD's own OpenAPI schema (KubeRay v1.7.0, vendored as a subset in
  ``infra/schemas/`` by ``infra.vendor_crd_schemas``), strict about unknown fields; every embedded pod template
  against Kubernetes' ``PodTemplateSpec`` schema from ``kubernetes-validate`` (bundled, no network); plus the
  autoscaling bounds (``minReplicas <= replicas <= maxReplicas``) and ``runtimeEnvYAML`` being a YAML mapping.
- Other Kubernetes kinds: ``kubernetes-validate``'s strict schema for ``K8S_VERSION``. An unknown kind is an error.
- The Ray cluster-launcher YAML (``cluster_name`` + ``provider`` at the top): the ``ray-schema.json`` shipped
  inside the installed ``ray`` package, i.e. the schema ``ray up`` itself applies.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

INFRA = Path(__file__).resolve().parent
SCHEMA_DIR = INFRA / "schemas"
K8S_VERSION = "1.33"
POD_TEMPLATE_MARKER = "x-laioncele-podtemplate"
RAY_KINDS = {"RayCluster": "raycluster.schema.json", "RayJob": "rayjob.schema.json"}


@cache
def _crd_schema(kind: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / RAY_KINDS[kind]).read_text())


@cache
def _launcher_schema() -> dict[str, Any]:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def _where(path: Any) -> str:
    return ".".join(str(p) for p in path) or "<root>"


def _schema_errors(schema: dict[str, Any], doc: Any, prefix: str) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{prefix}: {_where(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def _pod_templates(schema: dict[str, Any], doc: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[str, Any]]:
    """Walk the schema and the document together; yield (path, value) wherever the schema marks a pod template."""
    if schema.get(POD_TEMPLATE_MARKER):
        yield _where(path), doc
        return
    if isinstance(doc, dict):
        for key, value in doc.items():
            sub = schema.get("properties", {}).get(key)
            if isinstance(sub, dict):
                yield from _pod_templates(sub, value, (*path, key))
    elif isinstance(doc, list) and isinstance(schema.get("items"), dict):
        for i, value in enumerate(doc):
            yield from _pod_templates(schema["items"], value, (*path, i))


def _k8s_errors(doc: dict[str, Any], prefix: str) -> list[str]:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{prefix}: {_where(exc.path)}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"{prefix}: {exc.message}"]
    return []


def _group_bounds(spec: dict[str, Any], where: str) -> list[str]:
    errors = []
    for group in spec.get("workerGroupSpecs") or []:
        lo, hi = group.get("minReplicas", 0), group.get("maxReplicas", 0)
        replicas = group.get("replicas", lo)
        if not (isinstance(lo, int) and isinstance(hi, int) and isinstance(replicas, int)):
            continue  # type errors are reported by the schema
        if not lo <= replicas <= hi:
            errors.append(
                f"{where}: workerGroupSpecs[{group.get('groupName')}]: need minReplicas <= replicas <= "
                f"maxReplicas, got {lo} <= {replicas} <= {hi}"
            )
    return errors


def _ray_errors(doc: dict[str, Any], prefix: str) -> list[str]:
    kind = doc["kind"]
    schema = _crd_schema(kind)
    errors = _schema_errors(schema, doc, prefix)
    for where, template in _pod_templates(schema, doc):
        wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
        errors += _k8s_errors(wrapped, f"{prefix}: {where} (PodTemplateSpec)")
    spec = doc.get("spec") or {}
    cluster_spec = spec.get("rayClusterSpec") if kind == "RayJob" else spec
    if isinstance(cluster_spec, dict):
        errors += _group_bounds(cluster_spec, prefix)
    if kind == "RayJob" and isinstance(spec.get("runtimeEnvYAML"), str):
        try:
            parsed = yaml.safe_load(spec["runtimeEnvYAML"])
        except yaml.YAMLError as exc:
            errors.append(f"{prefix}: spec.runtimeEnvYAML is not valid YAML: {exc}")
        else:
            if not isinstance(parsed, dict):
                errors.append(f"{prefix}: spec.runtimeEnvYAML must be a mapping, got {type(parsed).__name__}")
    return errors


def validate_documents(docs: list[Any], source: str = "<doc>", kind_hint: str | None = None) -> list[str]:
    """All schema errors of these YAML documents (empty list: valid), each naming document, path and reason."""
    errors: list[str] = []
    for i, doc in enumerate(docs):
        prefix = f"{source}[{i}]"
        if not isinstance(doc, dict):
            errors.append(f"{prefix}: not a mapping")
        elif kind_hint == "ray-cluster-launcher" or ("cluster_name" in doc and "provider" in doc):
            errors += _schema_errors(_launcher_schema(), doc, f"{prefix} (ray cluster launcher)")
        elif doc.get("kind") in RAY_KINDS and str(doc.get("apiVersion", "")).startswith("ray.io/"):
            errors += _ray_errors(doc, f"{prefix} {doc['kind']}")
        elif "kind" in doc and "apiVersion" in doc:
            errors += _k8s_errors(doc, f"{prefix} {doc['kind']}")
        else:
            errors.append(
                f"{prefix}: neither a Kubernetes object (apiVersion/kind) nor a cluster-launcher config"
            )
    return errors


def validate_file(path: str | Path) -> list[str]:
    path = Path(path)
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as exc:
        return [f"{path}: not valid YAML: {exc}"]
    return validate_documents(docs, source=path.name)


def default_files() -> list[Path]:
    return sorted([*INFRA.glob("*.yaml"), *(INFRA / "kuberay").glob("*.yaml")])


def main(argv: list[str] | None = None) -> int:
    paths = [Path(p) for p in (argv if argv is not None else sys.argv[1:])] or default_files()
    failed = 0
    for path in paths:
        errors = validate_file(path)
        failed += bool(errors)
        print(f"{'FAIL' if errors else 'ok  '} {path}")
        for error in errors:
            print(f"     {error}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

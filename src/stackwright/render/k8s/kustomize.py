"""Write the manifests as kustomize: ``k8s/base`` (the production build of the primary region) and
``k8s/overlays/<region>-<environment>`` holding exactly what differs in that build (JSON 6902 patches
computed from :func:`build_manifests`) plus the per-region image registry.

Applying an overlay therefore yields the same objects as ``build_manifests(system, region, env)``,
which the tests check by applying the patches.
"""

from __future__ import annotations

from typing import Any

from ...deploy import names as naming
from ...deploy.environments import default_environment
from ...spec import System
from ..errors import RenderError
from ..yamlio import dump, dump_all
from . import build_components, build_manifests, migration_manifests
from .context import key

KUSTOMIZE_API = "kustomize.config.k8s.io/v1beta1"


def base_target(system: System) -> tuple[str, str]:
    """(region, environment) the base is built for: the primary region, production if the spec has it."""
    return system.primary_region.name, default_environment(system)


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def json_diff(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    """RFC 6902 operations turning ``old`` into ``new`` (lists of different length are replaced whole)."""
    if isinstance(old, dict) and isinstance(new, dict):
        ops: list[dict[str, Any]] = []
        for k in sorted(set(old) | set(new)):
            p = f"{path}/{_escape(str(k))}"
            if k not in new:
                ops.append({"op": "remove", "path": p})
            elif k not in old:
                ops.append({"op": "add", "path": p, "value": new[k]})
            else:
                ops += json_diff(old[k], new[k], p)
        return ops
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [op for i, (a, b) in enumerate(zip(old, new, strict=True)) for op in json_diff(a, b, f"{path}/{i}")]
    if old == new and type(old) is type(new):
        return []
    if not path:
        raise RenderError("an overlay cannot replace a whole object")
    return [{"op": "replace", "path": path, "value": new}]


def _target(o: dict[str, Any]) -> dict[str, str]:
    group, _, version = o["apiVersion"].rpartition("/")
    target = {"version": version, "kind": o["kind"], "name": o["metadata"]["name"]}
    if group:
        target["group"] = group
    return target


def _patch_file(o: dict[str, Any]) -> str:
    return f"patches/{o['kind'].lower()}-{o['metadata']['name']}.yaml"


def image_overrides(system: System, region: str) -> list[dict[str, str]]:
    """kustomize ``images:`` pointing every service image at the region's ECR (account placeholder)."""
    registry = naming.ecr_registry(region)
    return [{"name": naming.image_name(system, s), "newName": f"{registry}/{naming.repository_name(system, s)}"}
            for s in system.services]


def overlay(system: System, region: str, environment: str, base: list[dict[str, Any]]) -> dict[str, str]:
    """Files of one overlay (relative to the overlay folder)."""
    objects = build_manifests(system, region, environment)
    by_key = {key(o): o for o in objects}
    if set(by_key) != {key(o) for o in base}:
        missing = sorted({key(o) for o in base} ^ set(by_key))
        raise RenderError(f"{region}/{environment} has different objects than the base ({missing[0][1]} "
                          f"'{missing[0][2]}'); overlays can only change fields")
    files: dict[str, str] = {}
    patches: list[dict[str, Any]] = []
    for old in base:
        ops = json_diff(old, by_key[key(old)])
        if ops:
            path = _patch_file(old)
            files[path] = dump(ops)
            patches.append({"path": path, "target": _target(old)})
    kustomization = {
        "apiVersion": KUSTOMIZE_API,
        "kind": "Kustomization",
        "resources": ["../../base"],
        "images": image_overrides(system, region),
        "patches": patches,
    }
    files["kustomization.yaml"] = dump(kustomization)
    return files


def render_tree(system: System) -> dict[str, str]:
    """``k8s/base``, every ``k8s/overlays/<region>-<env>`` and ``k8s/migrations`` as path -> text."""
    region, env = base_target(system)
    components = build_components(system, region, env)
    files: dict[str, str] = {}
    for stem, objects in components.items():
        files[f"k8s/base/{stem}.yaml"] = dump_all(objects)
    files["k8s/base/kustomization.yaml"] = dump({
        "apiVersion": KUSTOMIZE_API, "kind": "Kustomization",
        "resources": [f"{stem}.yaml" for stem in components],
    })
    base = [o for objects in components.values() for o in objects]
    for r in system.regions:
        for e in system.environments:
            for rel, text in overlay(system, r.name, e, base).items():
                files[f"k8s/overlays/{r.name}-{e}/{rel}"] = text
    jobs = migration_manifests(system, env)
    if jobs:
        files["k8s/migrations/migrations.yaml"] = dump_all(jobs)
        files["k8s/migrations/kustomization.yaml"] = dump({
            "apiVersion": KUSTOMIZE_API, "kind": "Kustomization", "resources": ["migrations.yaml"],
            "images": image_overrides(system, system.primary_region.name),
        })
    return files


# ------------------------------------------------------------------ reading a rendered tree back


def apply_json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply the RFC 6902 ``add``/``replace``/``remove`` operations :func:`json_diff` emits (in place)."""
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent: Any = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last: Any = int(parts[-1]) if isinstance(parent, list) else parts[-1]
        if op["op"] == "remove":
            del parent[last]
        elif op["op"] == "add" and isinstance(parent, list):
            parent.insert(last, op["value"])
        elif op["op"] in ("add", "replace"):
            parent[last] = op["value"]
        else:
            raise ValueError(f"unsupported patch op {op['op']!r}")
    return doc


def _set_images(node: Any, images: dict[str, dict[str, str]]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("containers", "initContainers") and isinstance(v, list):
                for c in v:
                    name, _, tag = c.get("image", "").partition(":")
                    if name in images:
                        img = images[name]
                        new_tag = img.get("newTag", tag)
                        c["image"] = f"{img.get('newName', name)}:{new_tag}" if new_tag else img.get("newName", name)
            _set_images(v, images)
    elif isinstance(node, list):
        for item in node:
            _set_images(item, images)


def build_kustomization(folder: Any) -> list[dict[str, Any]]:
    """A minimal ``kustomize build`` of the trees :func:`render_tree` writes (resources, images, JSON 6902
    patches), so checks run offline without the kustomize binary."""
    import copy
    from pathlib import Path

    from ..yamlio import load_all

    folder = Path(folder)
    spec = load_all((folder / "kustomization.yaml").read_text())[0]
    docs: list[dict[str, Any]] = []
    for res in spec.get("resources", []):
        path = folder / res
        docs += build_kustomization(path) if path.is_dir() else load_all(path.read_text())
    docs = copy.deepcopy(docs)
    _set_images(docs, {i["name"]: i for i in spec.get("images", [])})
    for patch in spec.get("patches", []):
        target = patch["target"]
        ops = load_all((folder / patch["path"]).read_text())[0]
        for d in docs:
            group, _, version = d["apiVersion"].rpartition("/")
            if (d["kind"], d["metadata"]["name"], version, group) == (
                    target["kind"], target["name"], target["version"], target.get("group", "")):
                apply_json_patch(d, ops)
    return docs

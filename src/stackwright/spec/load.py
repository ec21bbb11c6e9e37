"""Load and validate a system.yaml into a :class:`System`, turning every problem into a located SpecError."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..resources.registry import KINDS
from .accelerators import check_accelerators
from .addresses import check_addresses
from .catalog import check_priced
from .errors import SpecError, did_you_mean
from .model import System
from .redis_keys import check_redis_keys
from .shutdown import check_shutdown
from .yaml_lines import Loc, line_for, load_with_lines


def find_system_file(name_or_path: str | Path, root: Path | None = None) -> Path:
    """Resolve ``voting``, ``systems/voting`` or a path to a system.yaml."""
    candidate = Path(name_or_path)
    root = root or Path.cwd()
    options = [candidate, candidate / "system.yaml", root / "systems" / str(name_or_path) / "system.yaml"]
    for option in options:
        if option.is_file():
            return option.resolve()
    known = sorted(p.parent.name for p in (root / "systems").glob("*/system.yaml"))
    # A typo of a known name gets that name; otherwise every known one is listed.
    hint = (did_you_mean(Path(str(name_or_path)).name, known, listed="known systems") if known
            else "run from the project root, or pass a path")
    raise SpecError(f"no system.yaml found for {str(name_or_path)!r}", hint=hint)


def load_system(name_or_path: str | Path, root: Path | None = None) -> System:
    """Load, validate and cross-check a system spec. Raises SpecError with file:line on any problem."""
    path = find_system_file(name_or_path, root)
    data, lines = load_with_lines(path)
    if not isinstance(data, dict):
        raise SpecError("a system.yaml must be a mapping at the top level", path, 1)
    try:
        system = System.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc, path, lines, data) from None
    system._source = path
    check_references(system, path, lines)
    check_values(system, path, lines)
    return system


def check_service_code(system: System) -> None:
    """Each service's folder exists and holds the module its ``app:`` names (``module.py``, a package or a
    namespace folder). Checked before a local run (``up``, ``demo``, ``bench``, ``chaos``), not at load:
    a spec without code yet still renders and plans. Raises SpecError with the file:line of the ``app:``
    (or of the service) on the first miss."""
    if system.source is None:
        return
    _, lines = load_with_lines(system.source)
    for name, svc in system.services.items():
        folder = system.service_dir(name)
        module = svc.app.split(":", 1)[0]
        rel = Path(*module.split("."))
        loc: Loc = ("services", name, "app") if ("services", name, "app") in lines else ("services", name)
        if not folder.is_dir():
            raise SpecError(f"service '{name}': its code folder {folder} does not exist", system.source,
                            line_for(lines, ("services", name, "path") if svc.path else ("services", name)),
                            "create it, or set path: to where the service's code is")
        if not ((folder / rel).with_suffix(".py").is_file() or (folder / rel / "__init__.py").is_file()
                or (folder / rel).is_dir()):
            raise SpecError(f"service '{name}': app '{svc.app}' names module '{module}', which is not in {folder}",
                            system.source, line_for(lines, loc), f"expected {rel}.py there")


def check_values(system: System, path: Path | None = None, lines: dict[Loc, int] | None = None) -> None:
    """Checks of values against the outside world: addresses (CIDRs, domain, URLs) and priced instance types."""
    found = lines or {}

    def fail(message: str, loc: Loc, hint: str | None = None) -> SpecError:
        return SpecError(message, path, line_for(found, loc), hint)

    check_addresses(system, fail)
    check_priced(system, fail)
    check_redis_keys(system, fail)


def _first_error(exc: ValidationError, path: Path, lines: dict[Loc, int], data: Any) -> SpecError:
    err = _most_relevant(exc.errors())
    loc = _data_loc(tuple(err["loc"]), data)
    where = ".".join(str(p) for p in loc) or "(top level)"
    kind = err["type"]
    hint = None
    if kind == "extra_forbidden":
        allowed = _allowed_keys(tuple(err["loc"]))
        hint = did_you_mean(loc[-1], allowed, listed="allowed") if allowed else None
        message = f"unknown key '{loc[-1]}'" + (f" in {'.'.join(map(str, loc[:-1]))}" if loc[:-1] else "")
    elif kind == "missing":
        message = f"missing required key '{where}'"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        message = f"{where}: resource kind must be one of {', '.join(KINDS)}"
        loc = (*loc, "kind")
        if kind == "union_tag_invalid":
            hint = did_you_mean(err["ctx"]["tag"], KINDS, listed=None)
    elif kind in ("literal_error", "enum"):
        # A value from a fixed set (a route method, a service kind, a region role, ...): name the closest one.
        expected = err["ctx"]["expected"]
        message = f"{where}: {err['input']!r} is not allowed; expected {expected}"
        hint = did_you_mean(err["input"], _expected_values(expected), listed=None)
    else:
        msg = err["msg"].removeprefix("Value error, ")
        message = f"{where}: {msg}"
        if "input" in err and kind.endswith("_type"):
            message += f" (got {err['input']!r})"
    return SpecError(message, path, line_for(lines, loc), hint)


def _expected_values(expected: str) -> list[Any]:
    """The values in pydantic's ``expected`` text: ``"'GET', 'POST' or 'PUT'"`` -> ``['GET', 'POST', 'PUT']``."""
    values: list[Any] = []
    for part in re.split(r", | or ", expected):
        try:
            values.append(ast.literal_eval(part))
        except (ValueError, SyntaxError):
            values.append(part)
    return values


def _most_relevant(errors: list[dict[str, Any]]) -> dict[str, Any]:
    # Discriminated unions report one error per branch; the deepest location is the useful one.
    return max(errors, key=lambda e: len(e["loc"]))


def _data_loc(loc: tuple[Any, ...], data: Any) -> Loc:
    """Drop pydantic's union-branch names (a resource kind such as 'postgres') that are not keys in the YAML."""
    out: list[Any] = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if in_dict or in_list:
            out.append(part)
            node = node[part]
        elif isinstance(node, dict | list):
            # A branch tag, or the missing key itself (kept so the message names it).
            if isinstance(part, str) and part not in KINDS:
                out.append(part)
                node = None
        else:
            break
    return tuple(out)


def _allowed_keys(raw_loc: tuple[Any, ...]) -> list[str]:
    """The keys the section at pydantic's ``raw_loc`` (its last part the unknown key) accepts. The branch of a
    union (the resource kinds) is the one whose tag pydantic put in the location."""
    from pydantic import BaseModel

    model: type[BaseModel] | None = System
    branches: list[type[BaseModel]] = []
    for part in raw_loc[:-1]:
        chosen = next((m for m in branches if part in _tags(m)), None)
        if chosen is not None:
            model, branches = chosen, []
            continue
        field = model.model_fields.get(part) if model is not None and isinstance(part, str) else None
        if field is None:
            continue  # a dict key or list index: the model stays that of the values
        branches = _models_in(field.annotation)
        model = branches[0] if len(branches) == 1 else None
    return sorted(model.model_fields) if model else []


def _tags(model: Any) -> set[Any]:
    """The values a required Literal field of ``model`` takes (its discriminator tag), and its class name."""
    from typing import Literal, get_args, get_origin

    tags: set[Any] = {model.__name__}
    for field in model.model_fields.values():
        if field.is_required() and get_origin(field.annotation) is Literal:
            tags.update(get_args(field.annotation))
    return tags


def _models_in(annotation: Any) -> list[Any]:
    """Every pydantic model inside a field's annotation (``dict[str, A | B]`` -> ``[A, B]``)."""
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [found for arg in get_args(annotation) for found in _models_in(arg)]


def check_references(system: System, path: Path | None = None, lines: dict[Loc, int] | None = None) -> None:
    """Cross-checks pydantic cannot express: dangling names, duplicate routes, one primary region."""
    lines = lines or {}

    def fail(message: str, loc: Loc, hint: str | None = None) -> SpecError:
        return SpecError(message, path, line_for(lines, loc), hint)

    def suggest(name: str, options: list[str]) -> str | None:
        return did_you_mean(name, sorted(options), listed="declared")

    primaries = [r.name for r in system.regions if r.role == "primary"]
    if len(primaries) != 1:
        raise fail(f"exactly one region must have role: primary (found {len(primaries)})", ("regions",))
    names = [r.name for r in system.regions]
    if len(set(names)) != len(names):
        raise fail("a region is listed twice", ("regions",))

    pools = [p.name for p in system.cluster.node_pools]
    limits = list(system.edge.rate_limits)
    if system.edge.default_rate_limit and system.edge.default_rate_limit not in limits:
        raise fail(f"edge.default_rate_limit '{system.edge.default_rate_limit}' is not a declared rate limit",
                   ("edge", "default_rate_limit"), suggest(system.edge.default_rate_limit, limits))

    seen_routes: dict[tuple[str | None, str, str], str] = {}
    for sname, svc in system.services.items():
        base: Loc = ("services", sname)
        for i, used in enumerate(svc.uses):
            if used not in system.resources:
                raise fail(f"service '{sname}' uses '{used}', which is not a declared resource",
                           (*base, "uses", i), suggest(used, list(system.resources)))
        for i, called in enumerate(svc.calls):
            if called not in system.services:
                raise fail(f"service '{sname}' calls '{called}', which is not a declared service",
                           (*base, "calls", i), suggest(called, list(system.services)))
            if called == sname:
                raise fail(f"service '{sname}' calls itself", (*base, "calls", i))
        if svc.node_pool and svc.node_pool not in pools:
            raise fail(f"service '{sname}' runs on node pool '{svc.node_pool}', which is not declared",
                       (*base, "node_pool"), suggest(svc.node_pool, pools))
        if svc.autoscale and svc.autoscale.queue:
            q = system.resources.get(svc.autoscale.queue)
            if q is None or q.kind != "queue":
                raise fail(f"service '{sname}' scales on '{svc.autoscale.queue}', which is not a declared queue",
                           (*base, "autoscale", "queue"), suggest(svc.autoscale.queue, list(system.resources)))
            if svc.autoscale.queue not in svc.uses:
                raise fail(f"service '{sname}' scales on queue '{svc.autoscale.queue}' but does not use it",
                           (*base, "autoscale", "queue"), "add it to uses")
        if svc.autoscale and svc.autoscale.metric and not system.monitoring.prometheus:
            raise fail(f"service '{sname}' scales on metric '{svc.autoscale.metric.name}' but monitoring.prometheus "
                       "is off", (*base, "autoscale", "metric"), "set monitoring.prometheus: true")
        if svc.kind == "worker" and svc.routes:
            raise fail(f"worker '{sname}' cannot have routes; make it kind: api", (*base, "routes"))
        if svc.replicas.max < 1:
            raise fail(f"service '{sname}' needs replicas.max >= 1", (*base, "replicas"))
        for i, route in enumerate(svc.routes):
            if route.auth == "required" and system.edge.identity is None:
                raise fail(f"route {route.path} requires auth but edge.identity is not configured",
                           (*base, "routes", i, "auth"), "add edge.identity with issuer and audience")
            if route.api_key_prefixes and (route.auth != "required" or not all(route.api_key_prefixes)):
                raise fail(f"route {route.path}: api_key_prefixes need auth: required and non-empty prefixes",
                           (*base, "routes", i, "api_key_prefixes"), "set auth: required, or drop api_key_prefixes")
            if route.rate_limit and route.rate_limit not in limits:
                raise fail(f"route {route.path} uses rate limit '{route.rate_limit}', which is not declared",
                           (*base, "routes", i, "rate_limit"), suggest(route.rate_limit, limits))
            for method in route.methods or ["*"]:
                # One owner per (host, path, method): a route limited to a host is another route.
                key = (route.host, route.path, method)
                other = seen_routes.get(key) or seen_routes.get((route.host, route.path, "*"))
                if other is not None or (method == "*" and any((h, p) == (route.host, route.path)
                                                               for h, p, _ in seen_routes)):
                    raise fail(f"route {route.path} is claimed by both '{other or '?'}' and '{sname}'",
                               (*base, "routes", i, "path"), "give each method/path one owner")
                seen_routes[key] = sname
    for name in system.slo.peak_mix:
        if name not in system.services:
            raise fail(f"slo.peak_mix names '{name}', which is not a declared service", ("slo", "peak_mix", name),
                       suggest(name, list(system.services)))
    # Imported here: the resources package loads the spec first (see stackwright.resources).
    from ..resources import kind_of

    for rname, res in system.resources.items():
        kind_of(res).check(system, rname, res, fail)
    check_accelerators(system, fail)
    _check_acyclic(system, fail)
    check_shutdown(system, fail)


def _check_acyclic(system: System, fail: Any) -> None:
    """Service calls must form a DAG so services can start in dependency order."""
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join([*trail[trail.index(name):], name])
            raise fail(f"services call each other in a cycle: {cycle}", ("services", name, "calls"))
        state[name] = 1
        for nxt in system.services[name].calls:
            visit(nxt, [*trail, name])
        state[name] = 2

    for name in system.services:
        visit(name, [])


def start_order(system: System) -> list[str]:
    """Services ordered so that everything a service calls starts before it."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        for nxt in system.services[name].calls:
            visit(nxt)
        order.append(name)

    for name in system.services:
        visit(name)
    return order

"""The spec loader: every real system loads; every kind of mistake gives one located, helpful error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests.helpers import line_of, write_spec

from stackwright.spec import SpecError, load_system, start_order
from stackwright.spec.quantities import bytes_size, cpu_millis, memory_mib, seconds

REPO = Path(__file__).resolve().parents[2]
VOTING = (REPO / "systems" / "voting" / "system.yaml").read_text()


@pytest.mark.parametrize("path", sorted((REPO / "systems").glob("*/system.yaml")), ids=lambda p: p.parent.name)
def test_every_system_loads(path: Path) -> None:
    system = load_system(path)
    assert system.name == path.parent.name
    assert system.primary_region.role == "primary"
    assert set(start_order(system)) == set(system.services)


def test_voting_matches_seed_000() -> None:
    s = load_system(REPO / "systems" / "voting" / "system.yaml")
    assert [r.name for r in s.regions] == ["us-east-1", "eu-west-1", "ap-southeast-1"]
    assert s.primary_region.name == "us-east-1"
    assert (s.services["vote"].replicas.min, s.services["vote"].replicas.max) == (10, 100)
    assert (s.services["auth"].replicas.min, s.services["auth"].replicas.max) == (3, 10)
    assert (s.services["results"].replicas.min, s.services["results"].replicas.max) == (5, 30)
    assert s.resources["votes"].kind == "queue" and s.resources["votes"].max_receive_count == 5
    assert s.resources["db"].cross_region_replicas
    assert s.slo.peak_rps == 250_000
    assert s.edge.api_gateway is not None and s.edge.api_gateway.rps_limit == 100_000
    assert s.cluster.node_pools[0].instance_types == ["m6i.2xlarge"]


CASES = [
    ("unknown key", "    replicas: {min: 10, max: 100}", "    replicas: {min: 10, max: 100, maxx: 3}",
     r"unknown key 'maxx'.*did you mean 'max'"),
    ("wrong type", "  peak_rps: 250000", "  peak_rps: lots", r"slo\.peak_rps: .*number"),
    ("dangling resource", "    uses: [db, cache, votes]", "    uses: [db, cach, votes]",
     r"uses 'cach', which is not a declared resource.*did you mean 'cache'"),
    ("bad cpu", "    resources: {cpu: 500m, memory: 256Mi}", "    resources: {cpu: fast, memory: 256Mi}",
     r"not a CPU quantity"),
    ("bad resource kind", "    kind: redis", "    kind: memcached",
     r"resource kind must be one of postgres, redis, queue, bucket, topic, search, secret, mail, sms$"),
    ("min over max", "    replicas: {min: 3, max: 10}", "    replicas: {min: 30, max: 10}",
     r"replicas\.min \(30\) is greater than replicas\.max \(10\)"),
    ("unknown rate limit", "rate_limit: viewer}", "rate_limit: viewers}",
     r"rate limit 'viewers'.*did you mean 'viewer'"),
    ("queue autoscale on non-queue", "autoscale: {queue: votes,", "autoscale: {queue: cache,",
     r"scales on 'cache', which is not a declared queue"),
    ("kubernetes without preStop sleep", '  kubernetes_version: "1.33"', '  kubernetes_version: "1.29"',
     r"cluster\.kubernetes_version: Kubernetes 1\.29 is not supported; the minimum is 1\.30"),
    ("kubernetes version not a version", '  kubernetes_version: "1.33"', '  kubernetes_version: "latest"',
     r"not a Kubernetes minor version: 'latest'"),
    # A value from a fixed set names the closest allowed one (a Literal field, or the resource kind).
    ("resource kind typo", "    kind: postgres", "    kind: postgress",
     r"resources\.db: resource kind must be one of .*\(hint: did you mean 'postgres'\?\)$"),
    ("route method typo", "      - {path: /polls, methods: [GET]}", "      - {path: /polls, methods: [GETT]}",
     r"methods\.0: 'GETT' is not allowed; expected 'GET', 'POST'.* or 'OPTIONS' \(hint: did you mean 'GET'\?\)$"),
    ("route method lower case", "      - {path: /polls, methods: [GET]}", "      - {path: /polls, methods: [get]}",
     r"'get' is not allowed.*did you mean 'GET'"),
    ("service kind typo", "    kind: worker", "    kind: wroker",
     r"services\.worker\.kind: 'wroker' is not allowed; expected 'api', 'worker' or 'web'.*did you mean 'worker'"),
    ("region role typo", "role: primary,", "role: primery,", r"regions\.0\.role: .*did you mean 'primary'"),
    ("rollout strategy typo", "      strategy: canary", "      strategy: canery",
     r"rollout\.strategy: 'canery' is not allowed.*did you mean 'canary'"),
    ("storage class typo", "storage_class: GLACIER}", "storage_class: GLACER}", r"did you mean 'GLACIER'"),
]


@pytest.mark.parametrize(("label", "old", "new", "pattern"), CASES, ids=[c[0] for c in CASES])
def test_mistakes_are_located(tmp_path: Path, label: str, old: str, new: str, pattern: str) -> None:
    assert old in VOTING, f"fixture text for {label} drifted from the voting spec"
    text = VOTING.replace(old, new, 1)
    path = write_spec(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_system(path)
    message = str(info.value)
    assert re.search(pattern, message), message
    assert info.value.file == path
    assert info.value.line == line_of(text, new.strip())


def test_duplicate_key_and_bad_yaml(tmp_path: Path) -> None:
    path = write_spec(tmp_path, VOTING.replace("  azs: 3\n", "  azs: 3\n  azs: 4\n", 1))
    with pytest.raises(SpecError, match="duplicate key 'azs'") as info:
        load_system(path)
    assert info.value.line == line_of(path.read_text(), "azs: 4")
    path = write_spec(tmp_path, "name: x\nservices: [unclosed\n")
    with pytest.raises(SpecError, match="invalid YAML") as info:
        load_system(path)
    assert info.value.line is not None


@pytest.mark.parametrize(("text", "line", "pattern"), [
    ("", 1, r"the spec is empty"),
    ("# only a comment\n\n# and another\n", 1, r"the spec is empty"),
    # The parser stops at line 4 (where 'resources:' cannot be a flow-mapping key); the fix is on line 2.
    ("name: x\nservices: {a: 1,\n  b: 2\nresources: {}\n", 2,
     r"the '\{' opened on this line is not closed \(at line 4: expected ',' or '\}', but got ':'\)"),
    ("name: x\nservices: {a: 1\n\n# end\n", 2, r"the '\{' opened on this line is not closed \(at line 5"),
    ("name: x\nservices: [a, b\nresources: {}\n", 2, r"the '\[' opened on this line is not closed"),
    ('name: x\ndescription: "abc\nslo: 1\n', 2, r"the quote opened on this line is not closed"),
    # Bad indentation is reported where it is (the mapping PyYAML names is the top-level one).
    ("name: x\ncluster:\n  azs: 3\n bad: 2\n", 4, r"expected <block end>.*block mapping that starts at line 1"),
])
def test_empty_specs_and_unclosed_brackets_are_located(tmp_path: Path, text: str, line: int, pattern: str) -> None:
    path = write_spec(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_system(path)
    assert re.search(pattern, str(info.value)), str(info.value)
    assert info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}: ")


@pytest.mark.parametrize(("kind", "added", "hint"), [
    ("bucket", "    versiond: true\n", "did you mean 'versioned'?"),  # not postgres' 'version'
    ("redis", "    node_typ: cache.t4g.small\n", "did you mean 'node_type'?"),
    ("queue", "    fifoo: true\n", "did you mean 'fifo'?"),
])
def test_an_unknown_key_in_a_resource_is_matched_against_its_own_kind(tmp_path: Path, kind: str, added: str,
                                                                      hint: str) -> None:
    anchor = f"    kind: {kind}\n"
    assert anchor in VOTING
    text = VOTING.replace(anchor, anchor + added, 1)
    with pytest.raises(SpecError) as info:
        load_system(write_spec(tmp_path, text))
    assert info.value.hint == hint, str(info.value)
    assert info.value.line == line_of(text, added.strip())


def test_a_resource_of_a_later_kind_is_located_by_its_own_fields(tmp_path: Path) -> None:
    # 'mail' (like 'secret' and 'sms') used to stay in the location as if it were a key of the resource.
    anchor = "  audit:\n"
    added = "  mailer:\n    kind: mail\n    sender: a@b.example\n    monthly_emails: 3\n"
    text = VOTING.replace(anchor, added + anchor, 1)
    with pytest.raises(SpecError) as info:
        load_system(write_spec(tmp_path, text))
    assert "unknown key 'monthly_emails' in resources.mailer" in str(info.value)
    assert info.value.hint == "did you mean 'monthly_emails_thousands'?"
    assert info.value.line == line_of(text, "monthly_emails: 3")


def test_alias_bombs_and_recursive_aliases_are_refused_at_once(tmp_path: Path) -> None:
    # Nine levels of ten aliases each expand to 10^9 values: the old loader expanded them all (minutes, GiBs).
    levels = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = write_spec(tmp_path, "name: bomb\n" + "\n".join(levels) + "\n")
    with pytest.raises(SpecError, match="more than 200,000 values") as info:
        load_system(path)
    assert info.value.file == path and info.value.line is not None
    path = write_spec(tmp_path, "name: loop\nservices: &s {api: [1, *s]}\n")
    with pytest.raises(SpecError, match="deeper than 64 levels"):
        load_system(path)


def test_cycles_and_route_conflicts(tmp_path: Path) -> None:
    text = VOTING.replace("    uses: [cache]\n", "    uses: [cache]\n    calls: [results]\n", 1)
    text = text.replace("    uses: [db, cache]\n", "    uses: [db, cache]\n    calls: [auth]\n", 1)
    with pytest.raises(SpecError, match="cycle: "):
        load_system(write_spec(tmp_path, text))
    clash = VOTING.replace("      - {path: /polls, methods: [GET]}", "      - {path: /polls, methods: [POST]}")
    with pytest.raises(SpecError, match="claimed by both 'vote' and 'results'"):
        load_system(write_spec(tmp_path, clash))


def test_missing_system_names_known_ones(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"known systems: .*voting"):
        load_system("nope", root=REPO)


def test_quantities() -> None:
    assert cpu_millis("250m") == 250 and cpu_millis("2") == 2000 and cpu_millis(0.5) == 500
    assert memory_mib("512Mi") == 512 and memory_mib("2Gi") == 2048 and memory_mib("1024Ki") == 1
    assert bytes_size("16KiB") == 16384 and bytes_size("1MB") == 1_000_000
    assert seconds("5m") == 300 and seconds("30s") == 30 and seconds(12) == 12
    with pytest.raises(ValueError):
        memory_mib("lots")


@pytest.mark.parametrize(("added", "pattern", "at"), [
    ("    shutdown: {prestop_sleep_s: 10}\n",
     r"service 'vote': shutdown\.prestop_sleep_s \(10\) is shorter than the ALB deregistration delay \(30\) "
     r"\+ 15 s.*hint: set prestop_sleep_s >= 45", "shutdown: {prestop_sleep_s: 10}"),
    ("    shutdown: {deregistration_delay_s: 4000}\n",
     r"services\.vote\.shutdown\.deregistration_delay_s: .*less than or equal to 3600",
     "shutdown: {deregistration_delay_s: 4000}"),
    ("    shutdown: {drain: 5}\n", r"unknown key 'drain'.*did you mean 'drain_s'", "shutdown: {drain: 5}"),
])
def test_shutdown_mistakes_are_located(tmp_path: Path, added: str, pattern: str, at: str) -> None:
    anchor = "    replicas: {min: 10, max: 100}\n"
    assert anchor in VOTING
    text = VOTING.replace(anchor, anchor + added, 1)
    with pytest.raises(SpecError) as info:
        load_system(write_spec(tmp_path, text))
    assert re.search(pattern, str(info.value)), str(info.value)
    assert info.value.line == line_of(text, at)


def test_did_you_mean_names_the_closest_option_or_lists_them() -> None:
    from stackwright.spec.errors import did_you_mean

    assert did_you_mean("postgress", ["postgres", "redis"]) == "did you mean 'postgres'?"
    assert did_you_mean("delete", ["GET", "DELETE"]) == "did you mean 'DELETE'?"  # case ignored
    assert did_you_mean("zzz", ["a", "b"], listed="declared") == "declared: a, b"
    assert did_you_mean("zzz", [], listed="declared") == "declared: none"
    assert did_you_mean("zzz", ["a"], listed=None) is None

"""Values checked against the outside world at load: CIDRs and other addresses, priced instance types,
Redis key families. Each mistake is one located SpecError; ``plan`` on such a spec writes nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from tests.helpers import line_of, write_spec
from typer.testing import CliRunner

from stackwright.cli import _register, app
from stackwright.plan import instances
from stackwright.plan.datastores import CACHE_NODE_GIB, db_memory_gib
from stackwright.spec import SpecError, load_system
from stackwright.spec.catalog import priced

REPO = Path(__file__).resolve().parents[2]
VOTING = (REPO / "systems" / "voting" / "system.yaml").read_text()
EU = "  - {name: eu-west-1, role: secondary, vpc_cidr: 10.1.0.0/16, traffic_share: 0.35}"


CASES = [
    ("prefix over 32", EU, EU.replace("10.1.0.0/16", "10.1.0.0/33"), r"regions\.1\.vpc_cidr: .*not an IPv4 CIDR"),
    ("prefix too large for a VPC", EU, EU.replace("10.1.0.0/16", "10.0.0.0/8"), r"must be /16 to /28"),
    ("prefix too small for a VPC", EU, EU.replace("10.1.0.0/16", "10.1.0.0/29"), r"must be /16 to /28"),
    ("host bits", EU, EU.replace("10.1.0.0/16", "10.1.0.1/16"), r"host bits set; the network is 10\.1\.0\.0/16"),
    ("octet out of range", EU, EU.replace("10.1.0.0/16", "10.300.0.0/16"), r"not an IPv4 CIDR"),
    ("overlapping regions", EU, EU.replace("10.1.0.0/16", "10.0.128.0/17"),
     r"10\.0\.128\.0/17 of eu-west-1 overlaps 10\.0\.0\.0/16 of us-east-1"),
    ("bad domain", "  domain: vote.example.com", "  domain: vote_example",
     r"edge\.domain: 'vote_example' is not a DNS"),
    ("issuer not https", "    issuer: https://voting.eu.auth0.com/", "    issuer: voting.eu.auth0.com",
     r"edge\.identity\.issuer .* is not an https URL"),
    ("unpriced aurora class", "    instance_class: db.r6g.4xlarge", "    instance_class: db.m7g.large",
     r"resources\.db\.instance_class: aurora-postgresql instance class 'db\.m7g\.large' has no price.*"
     r"priced aurora-postgresql instance classs: .*db\.r7g\.large"),
    ("unpriced node type", "      instance_types: [m6i.2xlarge]", "      instance_types: [m6i.3xlarge]",
     r"instance type 'm6i\.3xlarge' has no price in aws\.yaml \(ec2\).*m7g\.large"),
    ("unpriced cache node", "    node_type: cache.r6g.large", "    node_type: cache.r6g.huge",
     r"cache node type 'cache\.r6g\.huge' has no price.*cache\.r7g\.large"),
    ("keys of an unknown service", "created_by: vote,", "created_by: votes,",
     r"keys\[0\]\.created_by 'votes' is not a declared service.*did you mean 'vote'"),
    ("keys with a bad retention", "retention: 2d}", "retention: forever}", r"not a duration"),
]


@pytest.mark.parametrize(("label", "old", "new", "pattern"), CASES, ids=[c[0] for c in CASES])
def test_bad_values_are_located(tmp_path: Path, label: str, old: str, new: str, pattern: str) -> None:
    assert old in VOTING, f"fixture text for {label} drifted from the voting spec"
    text = VOTING.replace(old, new, 1)
    path = write_spec(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_system(path)
    assert re.search(pattern, str(info.value)), str(info.value)
    assert info.value.file == path
    assert info.value.line == line_of(text, new.strip())


def test_plan_on_a_bad_cidr_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    path = write_spec(tmp_path, VOTING.replace(EU, EU.replace("10.1.0.0/16", "10.1.0.0/33"), 1))
    _register()
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["plan", str(path), "--out", str(out), "--no-svg"])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    line = line_of(path.read_text(), "10.1.0.0/33")
    assert f"system.yaml:{line}: regions.1.vpc_cidr" in result.output.replace("\n", "")
    assert not out.exists()


def test_rds_classes_of_current_generations_load(tmp_path: Path) -> None:
    data = yaml.safe_load(VOTING)
    data["resources"]["db"].update(engine="rds-postgresql", instance_class="db.m7g.large")
    data["cluster"]["node_pools"][0]["instance_types"] = ["c7i.2xlarge", "r7i.2xlarge", "m7g.2xlarge"]
    data["resources"]["cache"]["node_type"] = "cache.r7g.xlarge"
    system = load_system(write_spec(tmp_path, yaml.safe_dump(data)))
    assert system.resources["db"].instance_class == "db.m7g.large"


def test_tables_agree() -> None:
    """Every priced node type has a size, every priced database class and cache node a memory size."""
    assert set(priced("ec2")) == set(instances.known_instance_types())
    for family in ("m7g", "r7g", "c7g", "t4g", "m7i", "r7i", "c7i", "m6i", "r6i", "c6i", "g4dn", "g5"):
        assert any(name.startswith(f"{family}.") for name in priced("ec2")), family
    for group in ("aurora", "rds"):
        for name in priced(group):
            assert db_memory_gib(name) > 0
    assert set(priced("elasticache")) == set(CACHE_NODE_GIB)

"""``stackwright queue dlq`` on payments: its events reach services through topic subscriptions (SNS -> SQS on
AWS), so each subscriber's dead-letter queue is listed as TOPIC/SERVICE beside the queue resources."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

SPEC = Path(__file__).resolve().parents[1] / "system.yaml"
#: The session fixture's handle (conftest.Payments); a conftest is not importable as a module.
Payments = Any


def _dlq(payments: Payments, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stackwright.cli", "queue", "dlq", str(SPEC), *args,
                           "--state-dir", str(payments.state_root)], capture_output=True, text=True, timeout=120)


def test_every_topic_subscriber_has_its_dead_letter_queue_listed(payments: Payments) -> None:
    listed = _dlq(payments, "--json")
    assert listed.returncode == 0, listed.stderr
    queues = json.loads(listed.stdout)["queues"]
    expected = {f"{topic}/{service}" for topic, res in payments.system.resources.items() if res.kind == "topic"
                for service in res.subscribers}
    assert expected and expected <= set(queues), sorted(queues)
    one = sorted(expected)[0]
    topic, service = one.split("/")
    assert queues[one]["queue"] == f"payments-{topic}-{service}"  # the subscriber's consumer group
    assert isinstance(queues[one]["dlq_depth"], int) and isinstance(queues[one]["messages"], list)

    refused = _dlq(payments, "--queue", one, "--redrive", "--json")
    assert refused.returncode == 0, refused.stderr
    assert "every subscriber" in json.loads(refused.stdout)["queues"][one]["not_redriven"]
    unknown = _dlq(payments, "--queue", f"{topic}/nobody")
    assert unknown.returncode != 0 and "has no queue" in unknown.stderr and one in unknown.stderr

"""CI runs the README's test command, read out of README.md: the two can never disagree."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_extracts_exactly_the_readme_test_command() -> None:
    script = (ROOT / ".ci/run").read_text()
    awk = re.search(r"cmd=\$\(awk '(.+?)' README.md\)", script)
    assert awk, ".ci/run must read the test command out of README.md"
    extracted = subprocess.run(["awk", awk.group(1), "README.md"], cwd=ROOT, capture_output=True, text=True,
                               check=True).stdout.strip()
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- readme-test-command -->", 1)[1].split("```sh\n", 1)[1].split("\n```", 1)[0]
    assert extracted == block.strip()
    assert 'pip install -e ".[test]"' in extracted and "python -m pytest" in extracted
    assert 'bash -euo pipefail -c "$cmd"' in script

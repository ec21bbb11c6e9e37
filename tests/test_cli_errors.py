"""Bad input found by trying the CLI as a newcomer: each gives one located line and a non-zero exit, never a
traceback, and writes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, hide: tuple[str, ...] = (), cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    code = ("import sys\n" f"for name in {hide!r}: sys.modules[name] = None\n"
            "from stackwright.cli import main\n" f"sys.argv = ['stackwright', *{list(args)!r}]\nmain()\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=120,
                          env={**os.environ, "COLUMNS": "400"})


def _one_line(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "app"
    shutil.copytree(ROOT / "systems" / "fastapi-app", folder, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    return folder / "system.yaml"


def test_regex_patterns_in_spec_errors_are_printed_as_written(tmp_path: Path) -> None:
    spec = _copy(tmp_path)
    spec.write_text(spec.read_text().replace("name: fastapi-app", "name: Fast_API!", 1))
    line = _one_line(_cli("plan", str(spec), "--out", str(tmp_path / "plan")))
    assert "^[a-z][a-z0-9-]{0,40}$" in line  # the console used to eat the [...] parts as markup
    assert not (tmp_path / "plan").exists()


def test_a_spec_that_is_not_utf8_is_located(tmp_path: Path) -> None:
    spec = _copy(tmp_path)
    lines = spec.read_bytes().split(b"\n")
    at = next(i for i, line in enumerate(lines) if line.startswith(b"description:"))
    lines[at] = b"description: caf\xff\xfe"
    spec.write_bytes(b"\n".join(lines))
    line = _one_line(_cli("render", str(spec), "--out", str(tmp_path / "out")))
    assert f"system.yaml:{at + 1}: not UTF-8" in line
    assert not (tmp_path / "out").exists()


def test_render_into_a_path_that_cannot_be_a_folder(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    line = _one_line(_cli("render", "fastapi-app", "--out", str(tmp_path / "a-file")))
    assert "cannot write the bundle to" in line and "a-file" in line
    assert (tmp_path / "a-file").read_text() == "x"


def test_every_missing_extra_is_named_at_once(tmp_path: Path) -> None:
    line = _one_line(_cli("render", "fastapi-app", "--out", str(tmp_path / "b"), "--check",
                          hide=("kubernetes_validate", "aws_cdk")))
    assert "'checks' extra" in line and "'aws' extra" in line
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("option", ["--port", "--dashboard-port"])
@pytest.mark.parametrize("value", ["70000", "0", "-1"])
def test_ports_out_of_range_are_refused_before_anything_starts(tmp_path: Path, option: str, value: str) -> None:
    line = _one_line(_cli("up", "fastapi-app", option, value, "--state-dir", str(tmp_path)))
    # the option parser's own message (a value like -1 reads as an option), in one line
    assert line.startswith("error: ") and line.endswith("(see 'stackwright up --help')")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("args", "message"), [
    (("up", "fastapi-app", "--port", "99999"), "Invalid value for '--port': Input should be less than or equal "
                                               "to 65535 (see 'stackwright up --help')"),
    (("up", "fastapi-app", "--port", "abc"), "Invalid value for '--port': Input should be a valid integer, "
                                             "unable to parse string as an integer (see 'stackwright up --help')"),
    (("render", "voting", "--chek"), "No such option: --chek (Possible options: --check, --help) "
                                     "(see 'stackwright render --help')"),
    (("demo", "voting", "--size", "0"), "Invalid value for '--size': Input should be greater than or equal to 1 "
                                        "(see 'stackwright demo --help')"),
    (("plan", "voting"), "Missing option '--out' / '-o'. (see 'stackwright plan --help')"),
    (("status",), "Missing argument 'system'. (see 'stackwright status --help')"),
    (("queue", "dlq"), "Missing argument 'system'. (see 'stackwright queue dlq --help')"),
    (("stauts", "voting"), "No such command 'stauts'. Did you mean 'status'? (see 'stackwright --help')"),
])
def test_usage_errors_of_every_command_are_one_line(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    """typer printed these in a multi-line box with the usage; the CLI's errors are one line each."""
    line = _one_line(_cli(*args, "--state-dir", str(tmp_path)) if args[0] == "up" else _cli(*args))
    assert line == f"error: {message}"
    assert not any(tmp_path.iterdir())


def test_bare_command_and_help_still_print_help() -> None:
    bare = _cli()
    assert bare.returncode == 2 and "Usage: stackwright [OPTIONS] COMMAND" in bare.stdout + bare.stderr
    helped = _cli("up", "--help")
    assert helped.returncode == 0 and "Usage: stackwright up [OPTIONS]" in helped.stdout


def test_only_takes_comma_separated_parts_and_names_an_unknown_one(tmp_path: Path) -> None:
    proc = _cli("render", "fastapi-app", "--only", "k8s,docker", "--out", str(tmp_path / "ok"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    written = sorted(p.name for p in (tmp_path / "ok").iterdir() if not p.name.startswith("."))
    assert written == ["README.md", "docker", "k8s"]
    line = _one_line(_cli("render", "fastapi-app", "--only", "k8s,helm", "--out", str(tmp_path / "bad")))
    assert "unknown part 'helm'" in line and "k8s, aws, docker, ci" in line
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(("args", "expected"), [
    (("--ttl", "-5"), "--ttl must be at least 1 second"),
    (("--sub", " "), "--sub must not be empty"),
    (("--role", "admn"), "voting has no role 'admn'; its routes and edge.identity.roles use: admin"),
    (("--claim", "tenant_id"), "--claim must be NAME=VALUE"),
    (("--claim", "exp=1"), "--claim 'exp' is set by the token itself"),
])
def test_token_refuses_what_would_mint_a_useless_token(tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    line = _one_line(_cli("token", "voting", *args, "--state-dir", str(tmp_path)))
    assert expected in line


@pytest.mark.parametrize("command", ["up", "demo"])
def test_a_system_needing_an_unknown_extra_is_refused_before_anything_starts(tmp_path: Path, command: str) -> None:
    spec = _copy(tmp_path)
    spec.write_text(spec.read_text().replace('seed: "003"\n', 'seed: "003"\nextras: [telepathy]\n', 1))
    line = _one_line(_cli(command, str(spec), "--state-dir", str(tmp_path / "state")))
    assert "fastapi-app system's services need 'telepathy' is not an extra" in line
    assert not (tmp_path / "state").exists()


def test_token_grants_a_role_a_service_checks_in_its_own_code(tmp_path: Path) -> None:
    import jwt

    # payments' reviewer role is on no route (payment checks it itself): refused before edge.identity.roles.
    proc = _cli("token", "payments", "--sub", "rev", "--role", "payments-reviewer", "--claim", "tenant_id=t1",
                "--state-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    claims = jwt.decode(proc.stdout.strip(), options={"verify_signature": False})
    assert claims["roles"] == ["payments-reviewer"] and claims["tenant_id"] == "t1"


def test_token_carries_extra_claims(tmp_path: Path) -> None:
    import jwt

    proc = _cli("token", "voting", "--sub", "alice", "--claim", "tenant_id=acme", "--state-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    claims = jwt.decode(proc.stdout.strip(), options={"verify_signature": False})
    assert claims["tenant_id"] == "acme" and claims["sub"] == "alice"


@pytest.mark.parametrize("command", ["up", "demo"])
def test_a_service_whose_app_module_is_missing_is_refused_before_anything_starts(tmp_path: Path,
                                                                                 command: str) -> None:
    spec = _copy(tmp_path)
    text = spec.read_text()
    assert "    app: app:app\n" in text
    spec.write_text(text.replace("    app: app:app\n", "    app: nothere:app\n", 1))
    line_no = spec.read_text().splitlines().index("    app: nothere:app") + 1
    line = _one_line(_cli(command, str(spec), "--state-dir", str(tmp_path / "state")))
    assert f"system.yaml:{line_no}: service 'api': app 'nothere:app' names module 'nothere'" in line, line
    assert not (tmp_path / "state").exists()  # nothing started, no Postgres data left behind

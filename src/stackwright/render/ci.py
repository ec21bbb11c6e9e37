"""The GitHub Actions workflow that ships a system: test, render, build + push images to ECR in every
region (GitHub OIDC, no stored keys), run migrations in the primary region, then deploy region by region
with kustomize and wait for every Deployment / Argo Rollout to finish.

One AWS account per environment: each GitHub environment holds ``vars.AWS_ACCOUNT_ID``.
"""

from __future__ import annotations

from typing import Any

from ..deploy import names as naming
from ..spec import System
from .k8s.migrations import job_name, migrated_databases
from .k8s.workload import is_canary
from .yamlio import dump

ARGO_ROLLOUTS_VERSION = "v1.8.3"
BUNDLE = "build/bundle"
OIDC = {"id-token": "write", "contents": "read"}
SUBST = " ".join(f"${{{p}}}" for p in naming.PLACEHOLDERS)


def _aws(role: str, region: str) -> dict[str, Any]:
    return {"name": "AWS credentials (GitHub OIDC)", "uses": "aws-actions/configure-aws-credentials@v4",
            "with": {"role-to-assume": role, "aws-region": region, "role-session-name": "github-deploy"}}


def _role(system: System, env: str) -> str:
    return f"arn:aws:iam::${{{{ vars.AWS_ACCOUNT_ID }}}}:role/{naming.deploy_role_name(system, env)}"


def _download() -> dict[str, Any]:
    return {"uses": "actions/download-artifact@v4", "with": {"name": "bundle", "path": BUNDLE}}


def _registry(region: str) -> str:
    return f"${{{{ vars.AWS_ACCOUNT_ID }}}}.dkr.ecr.{region}.amazonaws.com"


def _pin_images(system: System, folder: str, region: str, services: list[str]) -> str:
    lines = ["set -euo pipefail", f"cd {folder}"]
    for svc in services:
        repo = naming.repository_name(system, svc)
        lines.append(
            f"digest=$(aws ecr describe-images --region {region} --repository-name {repo} "
            f"--image-ids imageTag=${{GITHUB_SHA}} --query 'imageDetails[0].imageDigest' --output text)")
        image = f"{_registry(region)}/{repo}@${{digest}}"
        lines.append(f"kustomize edit set image {naming.image_name(system, svc)}={image}")
    return "\n".join(lines) + "\n"


def _placeholders(system: System, env: str) -> str:
    # The AWS app writes waf-acl-arn only when the spec has a WAF; reading a parameter that does not exist
    # fails the lookup, so a system without a WAF does not ask for it (its manifests do not use it).
    waf = [f'echo "WAF_ACL_ARN=$(aws ssm get-parameter --name {naming.ssm_parameter(system, env, "waf-acl-arn")} '
           '--query Parameter.Value --output text)" >> "$GITHUB_ENV"'] if system.edge.waf is not None else []
    return "\n".join([
        "set -euo pipefail",
        'echo "AWS_ACCOUNT_ID=${{ vars.AWS_ACCOUNT_ID }}" >> "$GITHUB_ENV"',
        *waf,
        f'echo "ACM_CERTIFICATE_ARN=$(aws ssm get-parameter --name '
        f'{naming.ssm_parameter(system, env, "certificate-arn")} --query Parameter.Value --output text)" '
        '>> "$GITHUB_ENV"',
    ]) + "\n"


def _tools() -> list[dict[str, Any]]:
    return [
        {"uses": "azure/setup-kubectl@v4"},
        {"uses": "imranismail/setup-kustomize@v2"},
        {"name": "kubectl argo rollouts plugin", "run": (
            "curl -sSfL -o /usr/local/bin/kubectl-argo-rollouts "
            f"https://github.com/argoproj/argo-rollouts/releases/download/{ARGO_ROLLOUTS_VERSION}/"
            "kubectl-argo-rollouts-linux-amd64\nchmod +x /usr/local/bin/kubectl-argo-rollouts\n")},
    ]


def _build_job(system: System, env: str, needs: list[str]) -> dict[str, Any]:
    regions = [r.name for r in system.regions]
    login = "\n".join(
        f"aws ecr get-login-password --region {r} | docker login --username AWS --password-stdin {_registry(r)}"
        for r in regions) + "\n"
    tags = "\n".join(f"{_registry(r)}/{system.name}/${{{{ matrix.service }}}}:${{{{ github.sha }}}}"
                     for r in regions)
    return {
        "name": f"build images ({env})",
        "needs": needs,
        "runs-on": "ubuntu-latest",
        "environment": env,
        "permissions": OIDC,
        "strategy": {"fail-fast": True, "matrix": {"service": list(system.services)}},
        "steps": [
            {"uses": "actions/checkout@v4"},
            _download(),
            _aws(_role(system, env), system.primary_region.name),
            {"name": "Log in to ECR in every region", "run": login},
            {"uses": "docker/setup-buildx-action@v3"},
            {"name": "Build once, push to every region", "uses": "docker/build-push-action@v6", "with": {
                "context": ".",
                "file": f"{BUNDLE}/docker/${{{{ matrix.service }}}}.Dockerfile",
                "push": True,
                "provenance": True,
                "tags": tags,
                "cache-from": "type=gha,scope=${{ matrix.service }}",
                "cache-to": "type=gha,mode=max,scope=${{ matrix.service }}",
            }},
        ],
    }


def _migrate_job(system: System, env: str, needs: list[str]) -> dict[str, Any] | None:
    dbs = migrated_databases(system)
    if not dbs:
        return None
    region = system.primary_region.name
    ns = naming.namespace(system)
    overlay = f"{BUNDLE}/k8s/overlays/{region}-{env}"
    prepare = "\n".join([
        "set -euo pipefail",
        f"kustomize build {overlay} | envsubst '{SUBST}' > /tmp/overlay.yaml",
        "yq 'select(.kind == \"Namespace\" or .kind == \"ServiceAccount\" or .kind == \"NetworkPolicy\" or "
        ".kind == \"SecretStore\" or .kind == \"ExternalSecret\")' /tmp/overlay.yaml | kubectl apply -f -",
        *(f"kubectl -n {ns} wait --for=condition=Ready externalsecret/{svc} --timeout=5m"
          for svc in sorted(set(dbs.values()))),
    ]) + "\n"
    run = ["set -euo pipefail"]
    for res in dbs:
        run.append(f"kubectl -n {ns} delete job {job_name(res)} --ignore-not-found --wait=true")
    run.append(f"kustomize build {BUNDLE}/k8s/migrations | envsubst '{SUBST}' | kubectl apply -f -")
    for res in dbs:
        run.append(f"kubectl -n {ns} wait --for=condition=complete job/{job_name(res)} --timeout=15m "
                   f"|| {{ kubectl -n {ns} logs job/{job_name(res)} --tail=200; exit 1; }}")
    return {
        "name": f"migrate databases ({env}, {region})",
        "needs": needs,
        "runs-on": "ubuntu-latest",
        "environment": env,
        "permissions": OIDC,
        "concurrency": {"group": f"migrate-{system.name}-{env}", "cancel-in-progress": False},
        "steps": [
            _download(),
            _aws(_role(system, env), region),
            *_tools(),
            {"name": "kubeconfig", "run": f"aws eks update-kubeconfig --name "
                                          f"{naming.cluster_name(system, env, region)} --region {region}\n"},
            {"name": "Deploy-time values", "run": _placeholders(system, env)},
            {"name": "Pin the migration image by digest",
             "run": _pin_images(system, f"{BUNDLE}/k8s/migrations", region, sorted(set(dbs.values())))},
            {"name": "Namespace, service accounts and secrets first", "run": prepare},
            {"name": "Run migrations", "run": "\n".join(run) + "\n"},
        ],
    }


def _wait(system: System) -> str:
    ns = naming.namespace(system)
    lines = ["set -euo pipefail"]
    for name, svc in system.services.items():
        if is_canary(svc):
            lines.append(f"kubectl argo rollouts status {name} -n {ns} --timeout 45m")
        else:
            lines.append(f"kubectl -n {ns} rollout status deployment/{name} --timeout=15m")
    return "\n".join(lines) + "\n"


def _deploy_job(system: System, env: str, needs: list[str]) -> dict[str, Any]:
    regions = [system.primary_region.name] + [r.name for r in system.regions if r.role != "primary"]
    overlay = f"{BUNDLE}/k8s/overlays/${{{{ matrix.region }}}}-{env}"
    apply = "\n".join([
        "set -euo pipefail",
        f"kustomize build {overlay} | envsubst '{SUBST}' > /tmp/manifests.yaml",
        "kubectl apply --server-side --force-conflicts -f /tmp/manifests.yaml",
    ]) + "\n"
    return {
        "name": f"deploy ({env}, ${{{{ matrix.region }}}})",
        "needs": needs,
        "runs-on": "ubuntu-latest",
        "environment": env,
        "permissions": OIDC,
        "strategy": {"fail-fast": True, "max-parallel": 1, "matrix": {"region": regions}},
        "concurrency": {"group": f"deploy-{system.name}-{env}-${{{{ matrix.region }}}}", "cancel-in-progress": False},
        "steps": [
            _download(),
            _aws(_role(system, env), "${{ matrix.region }}"),
            *_tools(),
            {"name": "kubeconfig", "run": "aws eks update-kubeconfig --name "
                                          + naming.cluster_name(system, env, "${{ matrix.region }}")
                                          + " --region ${{ matrix.region }}\n"},
            {"name": "Deploy-time values", "run": _placeholders(system, env)},
            {"name": "Pin images by digest", "run": _pin_images(system, overlay, "${{ matrix.region }}",
                                                                list(system.services))},
            {"name": "Apply", "run": apply},
            {"name": "Wait for every rollout", "run": _wait(system)},
        ],
    }


def workflow(system: System) -> dict[str, Any]:
    """The workflow as a dict (jobs in pipeline order)."""
    source = f"systems/{system.name}"
    jobs: dict[str, Any] = {
        "test": {
            "name": "test and render",
            "runs-on": "ubuntu-latest",
            "steps": [
                {"uses": "actions/checkout@v4"},
                {"uses": "actions/setup-python@v5", "with": {"python-version": "3.11", "cache": "pip"}},
                {"run": 'python -m pip install -e ".[test]"\n'},
                {"name": "Tests", "run": f"python -m pytest {source} -q\n"},
                {"name": "Render the deployment",
                 "run": f"stackwright render {system.name} --target eks --out {BUNDLE} --check\n"},
                {"uses": "actions/upload-artifact@v4", "with": {"name": "bundle", "path": BUNDLE,
                                                                "retention-days": 30}},
            ],
        },
    }
    previous = ["test"]
    for env in system.environments:
        jobs[f"build-{env}"] = _build_job(system, env, previous)
        needs = [f"build-{env}"]
        migrate = _migrate_job(system, env, needs)
        if migrate is not None:
            jobs[f"migrate-{env}"] = migrate
            needs = [f"migrate-{env}"]
        jobs[f"deploy-{env}"] = _deploy_job(system, env, needs)
        previous = [f"deploy-{env}"]
    return {
        "name": f"deploy {system.name}",
        "on": {
            "push": {"branches": ["main"], "paths": [f"{source}/**", "src/**", "pyproject.toml"]},
            "workflow_dispatch": {},
        },
        "permissions": {"contents": "read"},
        "concurrency": {"group": f"deploy-{system.name}", "cancel-in-progress": False},
        "jobs": jobs,
    }


def render_ci(system: System) -> dict[str, str]:
    """``ci/deploy.yml`` (copy it to ``.github/workflows/`` to enable it)."""
    header = (f"# Deploy pipeline of system '{system.name}' (rendered by stackwright render; edit system.yaml).\n"
              f"# Enable it by copying this file to .github/workflows/deploy-{system.name}.yml.\n")
    return {"ci/deploy.yml": header + dump(workflow(system), sort_keys=False)}

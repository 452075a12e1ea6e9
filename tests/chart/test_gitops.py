"""docs/gitops.md: the Argo CD health check, run in a Lua interpreter (lupa) exactly as the page
shows it, against statuses the operator's own `verify` wrote and the other shapes a connection
takes."""

from __future__ import annotations

import copy
import http.server
import json
import os
import re
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

DOC = ROOT / "docs" / "gitops.md"
HEALTH_KEY = "resource.customizations.health.gitprovider.dev_GitProviderConnection"
TOKEN = "gitea-token-for-the-health-check"


def _health_lua() -> str:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.DOTALL)
    config_maps = [yaml.safe_load(b) for b in blocks if "name: argocd-cm" in b]
    assert len(config_maps) == 1
    cm = config_maps[0]
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["namespace"] == "argocd"
    return cm["data"][HEALTH_KEY]


def _to_lua(lua, value):
    if isinstance(value, dict):
        return lua.table_from({k: _to_lua(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([_to_lua(lua, v) for v in value])
    return value


def health(obj: dict) -> tuple[str, str | None]:
    """What Argo CD would show: the script runs with the object as the global `obj`."""
    import lupa

    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = _to_lua(lua, obj)
    hs = lua.execute(_health_lua())
    return hs["status"], hs["message"]


def connection(status: dict | None, generation: int = 1) -> dict:
    obj = {
        "apiVersion": "gitprovider.dev/v1alpha1",
        "kind": "GitProviderConnection",
        "metadata": {"name": "gitea", "namespace": "team-a", "generation": generation},
        "spec": {"provider": "Gitea", "instanceName": "gitea", "url": "https://gitea.example.com",
                 "tokenSecretRef": {"name": "gitea-pat"}},
    }
    if status is not None:
        obj["status"] = status
    return obj


class _Gitea(http.server.BaseHTTPRequestHandler):
    """Just enough of Gitea's API (GET /api/v1/user, /user/repos, /version) for `verify`."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.headers.get("Authorization") != f"token {TOKEN}":
            return self._answer(401, {"message": "user does not exist [uid: 0, name: ]"})
        path = self.path.split("?")[0]
        answers = {
            "/api/v1/user": {"login": "jdoe", "full_name": "Jane Doe",
                             "email": "jdoe@example.com"},
            "/api/v1/user/repos": [],
            "/api/v1/version": {"version": "1.22.3"},
        }
        if path not in answers:
            return self._answer(404, {"message": "not found"})
        self._answer(200, answers[path])

    def _answer(self, code: int, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def gitea():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Gitea)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def operator_binary() -> Path:
    """The debug binary (scripts/test has built it for the Rust tests: a no-op then)."""
    result = subprocess.run(["cargo", "build", "--locked", "--bin", "gitprovider-operator"],
                            cwd=ROOT, capture_output=True, text=True, timeout=3000)
    assert result.returncode == 0, result.stderr[-5000:]
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    binary = (target if target.is_absolute() else ROOT / target) / "debug" / "gitprovider-operator"
    assert binary.is_file(), binary
    return binary


def verified_status(binary: Path, url: str, token: str) -> tuple[int, dict]:
    result = subprocess.run(
        [str(binary), "verify", "--provider", "gitea", "--url", url, "--token-env", "GITEA_TOKEN",
         "--timeout", "5s"],
        env={**os.environ, "GITEA_TOKEN": token}, capture_output=True, text=True, timeout=60)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def test_verified_is_healthy(operator_binary, gitea):
    code, status = verified_status(operator_binary, gitea, TOKEN)
    assert code == 0, status
    status["observedGeneration"] = 1
    assert health(connection(status)) == (
        "Healthy", "Verified: authenticated as jdoe on Gitea 1.22.3")


def test_a_rejected_token_is_degraded(operator_binary, gitea):
    code, status = verified_status(operator_binary, gitea, "revoked")
    assert code == 1
    state, message = health(connection(status))
    assert state == "Degraded"
    assert message.startswith("Unauthorized: "), message


def test_an_unreachable_instance_is_degraded(operator_binary):
    code, status = verified_status(operator_binary, "http://127.0.0.1:1", TOKEN)
    assert code == 1
    state, message = health(connection(status))
    assert (state, message.split(":")[0]) == ("Degraded", "Unreachable")


def _condition(status: str, reason: str, message: str = "") -> dict:
    return {"type": "Ready", "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-11-25T10:00:00Z"}


def test_no_status_yet_is_progressing():
    assert health(connection(None))[0] == "Progressing"
    assert health(connection({"observedGeneration": 1}))[0] == "Progressing"


def test_suspended():
    status = {"observedGeneration": 2,
              "conditions": [_condition("Unknown", "Suspended", "spec.suspend is true")]}
    assert health(connection(status, generation=2)) == (
        "Suspended", "Suspended: spec.suspend is true")


def test_progressing_reason():
    status = {"observedGeneration": 1, "conditions": [_condition("Unknown", "Progressing")]}
    assert health(connection(status)) == ("Progressing", "Progressing")


def test_an_older_generation_is_progressing_even_when_it_was_ready(operator_binary, gitea):
    _, status = verified_status(operator_binary, gitea, TOKEN)
    status = copy.deepcopy(status)
    status["observedGeneration"] = 1
    state, message = health(connection(status, generation=2))
    assert state == "Progressing" and "generation 2" in message


def test_expiring_soon_does_not_change_health():
    status = {"observedGeneration": 1, "conditions": [
        {"type": "TokenExpiringSoon", "status": "True", "reason": "TokenExpiringSoon",
         "message": "the token expires at 2026-12-01T00:00:00Z"},
        _condition("True", "Verified", "authenticated as jdoe on GitLab 17.5.1"),
    ]}
    assert health(connection(status))[0] == "Healthy"


@pytest.mark.parametrize("reason", ["SecretNotFound", "SecretKeyNotFound", "InvalidSpec",
                                    "TokenExpired", "InsufficientScope", "EndpointNotFound",
                                    "TLSError", "ProviderError", "DuplicateInstanceName",
                                    "RepositoryUnreadable"])
def test_every_false_reason_is_degraded(reason):
    status = {"observedGeneration": 1, "conditions": [_condition("False", reason, "why")]}
    assert health(connection(status)) == ("Degraded", f"{reason}: why")

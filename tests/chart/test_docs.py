"""The documentation: every link resolves, the reference pages cover every field of the CRD,
every Ready reason of the code and every flag the chart passes, and agree with the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, SCENARIOS, container, parse_args, render

DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "examples" / "README.md",
                *DOCS.glob("*.md")])


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    out = set()
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code:
            continue
        match = re.match(r"^#+ (.+)$", line)
        if match:
            out.add(re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-"))
    return out


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+://", target) or target.startswith("mailto:"):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.is_file() and resolved.suffix == ".md" \
                and anchor not in _anchors(resolved):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def _crd_fields() -> list[str]:
    crd = yaml.safe_load((ROOT / "crds" / "gitproviderconnections.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    out = []

    def walk(node: dict, prefix: str):
        for key, sub in node.get("properties", {}).items():
            out.append(prefix + key)
            walk(sub, prefix + key + ".")
            if "items" in sub:
                walk(sub["items"], prefix + key + "[].")

    walk(schema["spec"], "spec.")
    walk(schema["status"], "status.")
    return out


def test_every_field_is_documented():
    resource = (DOCS / "resource.md").read_text()
    status = (DOCS / "status.md").read_text()
    for field in _crd_fields():
        page = resource if field.startswith("spec.") else status
        assert f"| `{field}` |" in page, f"{field} has no row in docs/{'resource' if field.startswith('spec.') else 'status'}.md"


def _reasons_in_code() -> list[str]:
    source = (ROOT / "src" / "api" / "status.rs").read_text()
    impl = source[source.index("impl ReadyReason {"):]
    as_str = impl[impl.index("pub fn as_str(self)"):]
    as_str = as_str[:as_str.index("\n    }\n")]
    reasons = re.findall(r'ReadyReason::\w+ => "(\w+)"', as_str)
    assert "Verified" in reasons and "DuplicateInstanceName" in reasons, reasons
    return reasons


def _reason_rows(text: str) -> list[str]:
    start = text.index("| Ready reason |")
    rows = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append(re.match(r"^\| `(\w+)` \|", line).group(1))
    return rows


def test_every_reason_is_documented_and_the_readme_agrees():
    status_rows = _reason_rows((DOCS / "status.md").read_text())
    readme_rows = _reason_rows((ROOT / "README.md").read_text())
    code = _reasons_in_code()
    assert set(code) <= set(status_rows), set(code) - set(status_rows)
    assert set(code) <= set(readme_rows), set(code) - set(readme_rows)
    # what the docs list beyond the code is the contract's planned reason, marked as such
    for extra in set(status_rows) - set(code):
        line = next(l for l in (DOCS / "status.md").read_text().splitlines()
                    if l.startswith(f"| `{extra}` |"))
        assert "not yet in this version" in line, extra


def test_the_chart_flags_are_documented():
    cli = (DOCS / "cli.md").read_text()
    flags = set()
    for values in SCENARIOS.values():
        own = {k: v for k, v in values.items() if k != "extraArgs"}
        flags |= set(parse_args(container(render(own))["args"])[1])
    missing = sorted(f for f in flags if f"`{f}" not in cli)
    assert not missing, f"docs/cli.md does not document {missing}"


def test_the_readme_resource_example_is_the_reference_one():
    def first_yaml(text: str) -> str:
        return re.search(r"```yaml\n(apiVersion: gitprovider.dev/v1alpha1\n.*?)```", text,
                         re.DOTALL).group(1)

    readme = yaml.safe_load(first_yaml((ROOT / "README.md").read_text()
                                       [(ROOT / "README.md").read_text().index("## The resource"):]))
    reference = yaml.safe_load(first_yaml((DOCS / "resource.md").read_text()))
    assert readme == reference

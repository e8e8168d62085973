"""The README against the code: its error table lists every problem code the service can
answer with (and none it cannot), every input media type, and the options it documents."""

import ast
import re
from pathlib import Path

from core.errors import _DRF_CODES
from predictions import formats

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("core", "modelregistry", "predictions", "project")
README = (ROOT / "README.md").read_text()


def _codes_in_class(node: ast.ClassDef) -> set[str]:
    """`code = "..."` or `status_code, code, title = ..., "...", ...` in a class body."""
    codes = set()
    for statement in node.body:
        if not isinstance(statement, ast.Assign):
            continue
        for target in statement.targets:
            if isinstance(target, ast.Name) and target.id == "code":
                values = [statement.value]
            elif isinstance(target, ast.Tuple) and isinstance(statement.value, ast.Tuple):
                names = [getattr(element, "id", None) for element in target.elts]
                values = [
                    v for n, v in zip(names, statement.value.elts, strict=False) if n == "code"
                ]
            else:
                continue
            codes |= {v.value for v in values if isinstance(v, ast.Constant)}
    return codes


def _codes_in_source(tree: ast.AST) -> set[str]:
    """Error classes' codes, and `code="..."` given to problem() / problem_response()."""
    codes = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            codes |= _codes_in_class(node)
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name in ("problem", "problem_response"):
                codes |= {
                    k.value.value
                    for k in node.keywords
                    if k.arg == "code" and isinstance(k.value, ast.Constant)
                }
    return codes


def codes_the_service_uses() -> set[str]:
    """Every problem code: the error classes, the problem() calls, DRF's, nginx's own pages."""
    codes = {code for code, _ in _DRF_CODES.values()}
    for package in SOURCES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:
                codes |= _codes_in_source(ast.parse(path.read_text()))
    codes |= set(re.findall(r'"code": "(\w+)"', (ROOT / "nginx.conf").read_text()))
    return codes


def codes_in_readme() -> set[str]:
    section = README.split("### Errors", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {code for row in rows for code in re.findall(r"`(\w+)`", row.split("|")[1])}


def test_the_scan_finds_the_error_classes_and_the_handlers():
    codes = codes_the_service_uses()
    assert {"model_not_found", "job_not_found", "storage_full", "untrusted_type"} <= codes
    assert {"no_valid_rows", "not_ready", "server_error", "bad_gateway"} <= codes
    assert "wrong_type" not in codes  # a row error's code, not a problem's


def test_the_readme_error_table_lists_every_code_the_service_uses():
    missing = codes_the_service_uses() - codes_in_readme()
    assert not missing, f"codes missing from the README's error table: {sorted(missing)}"


def test_every_code_in_the_readme_error_table_is_still_used():
    gone = codes_in_readme() - codes_the_service_uses()
    assert not gone, f"the README's error table lists codes nothing raises: {sorted(gone)}"


def test_the_readme_names_every_input_media_type_and_alias():
    for item in formats.FORMATS:
        for media_type in item.media_types:
            assert f"`{media_type}`" in README, media_type


def test_the_readme_documents_probabilities_and_password_reset():
    assert "?probabilities=true" in README
    assert "/accounts/password_reset/" in README
    assert "EMAIL_HOST" in README

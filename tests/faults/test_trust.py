"""The trust boundary (README, "Configs and checkpoints are trusted input"): every ``torch.load`` that e4gym,
its agents and baselines call reads tensors only (``weights_only=True``), so a weights file runs no code."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("e4gym", "agents", "baselines")


def _load_calls(tree: ast.AST) -> list[ast.Call]:
    """Calls of ``<name>.load(...)`` where ``<name>`` is ``torch`` or ``th`` (how the code imports it)."""
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "load" and isinstance(node.func.value, ast.Name)
            and node.func.value.id in ("torch", "th")]


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_the_scan_finds_the_torch_loads() -> None:
    """The scan is not vacuous: the network weights, exit checkpoints, E4's cascade and zTT load with torch."""
    files = {p.relative_to(ROOT).as_posix() for p in _sources() if _load_calls(ast.parse(p.read_text()))}
    assert {"e4gym/dnn/nets.py", "e4gym/dnn/train_exits.py", "agents/e4/cascade.py", "baselines/ztt.py"} <= files


def test_every_torch_load_is_weights_only() -> None:
    bad = []
    for path in _sources():
        for call in _load_calls(ast.parse(path.read_text())):
            value = {kw.arg: kw.value for kw in call.keywords}.get("weights_only")
            if not (isinstance(value, ast.Constant) and value.value is True):
                bad.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert not bad, f"torch.load without weights_only=True (it would unpickle code): {bad}"

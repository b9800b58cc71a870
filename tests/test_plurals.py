"""No message reads '2 run(s)': a count says '1 run' or '2 runs' (core.text.plural)."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEDGED = re.compile(r"[A-Za-z]\(s\)")


def test_no_text_hedges_a_plural_with_s_in_brackets():
    found = []
    for folder in ("core", "cli", "dashboard", "worker"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and HEDGED.search(node.value):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.strip()[:60]}")
    # the module that explains the rule quotes the form it replaces
    assert [f for f in found if not f.startswith("core/text.py")] == []

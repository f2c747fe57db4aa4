"""Count the imports of the package's own modules made inside functions: each is a module
that a caller loads late, on purpose (start-up time, an optional layer) or by accident."""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def local_imports(package: Path) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom) and (
                        node.level > 0 or (node.module or "").startswith(package.name)):
                    found.append(f"{path}:{node.lineno}: from {node.module} "
                                 f"import {', '.join(a.name for a in node.names)}")
    return sorted(set(found))


if __name__ == "__main__":
    lines = local_imports(Path(sys.argv[1] if len(sys.argv) > 1 else "tui_eval"))
    print("\n".join(lines))
    print(f"{len(lines)} function-local imports of the package's own modules")

"""The package's layout: imports run one way, down the floors, with no circle.

Every import in ``guessgame/`` is read with `ast`, those under
``if TYPE_CHECKING:`` and inside functions included: a circle a type
checker alone sees is still a circle for the reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "guessgame"

#: The floors, top to bottom: a wing may import from its own wing and
#: from the floors below it, never from a wing beside it or above it.
FLOORS: list[set[str]] = [
    {"tap"},
    {"daemon", "admin", "web", "clients"},
    {"player", "ops"},
    {"game"},
    {"leaderboard", "wire"},
    {"store"},
    {"events", "__init__"},
]


def module_name(path: Path) -> str:
    """``guessgame/player/modern.py`` -> ``guessgame.player.modern``."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name."""
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports, wherever the import stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # "from guessgame.store import sqlite" imports the module guessgame.store.sqlite.
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in known and target != name)
    return found


def wing_of(name: str) -> str:
    """The wing a module belongs to: ``guessgame.player.modern`` -> ``player``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def floor_of(wing: str) -> int:
    """The floor of a wing (0 is the top)."""
    for floor, wings in enumerate(FLOORS):
        if wing in wings:
            return floor
    raise AssertionError(f"wing {wing!r} is on no floor: add it to FLOORS")


def graph() -> dict[str, set[str]]:
    """Who imports whom, among the package's modules."""
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle is not None:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle is not None:
                return cycle
    return None


def test_the_import_graph_of_guessgame_has_no_cycle() -> None:
    """No module of guessgame imports itself back through others, TYPE_CHECKING included."""
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_imports_point_down_the_floors() -> None:
    """Every import stays in its wing or goes to a lower floor; none goes up or beside."""
    wrong = [
        f"{name} imports {target}"
        for name, targets in sorted(graph().items())
        for target in sorted(targets)
        if wing_of(name) != wing_of(target) and floor_of(wing_of(name)) >= floor_of(wing_of(target))
    ]
    assert wrong == []


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"a"}}, ["a", "a"]),
    ],
)
def test_find_cycle_sees_a_circle(edges: dict[str, set[str]], expected: list[str] | None) -> None:
    """The cycle finder reports a circle where there is one, and only there."""
    assert find_cycle(edges) == expected


def test_a_type_checking_import_counts(tmp_path: Path) -> None:
    """An import under ``if TYPE_CHECKING:`` is an edge of the graph like any other."""
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from guessgame.game import Game\n"
        "def f():\n"
        "    from guessgame.store import base\n"
    )
    found = imports_of("guessgame.x", source, {"guessgame.game", "guessgame.store.base"})
    assert found == {"guessgame.game", "guessgame.store.base"}


def test_game_py_holds_no_player_text() -> None:
    """No text the modern dialect sends, nor any ``*** `` notice, is spelled in game.py."""
    from guessgame.player import modern

    texts = {
        value
        for name, value in vars(modern).items()
        if name.isupper() and isinstance(value, str) and len(value) > 8
    }
    assert texts, "the modern dialect's texts were not found"
    tree = ast.parse((PACKAGE / "game.py").read_text(encoding="utf-8"))
    strings = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]
    assert [s for s in strings if s.startswith("*** ") or s in texts] == []

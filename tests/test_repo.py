"""Repository hygiene: install metadata agrees with itself, CI runs the README's
test command, and notebooks are committed without outputs."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower()


def test_environment_yml_lists_the_pyproject_stack():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict) and "pip" in d)
    python_spec = next(d for d in conda["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert sorted(map(_normalise, pip_section)) == sorted(map(_normalise, pyproject["project"]["dependencies"]))
    assert python_spec.removeprefix("python") == pyproject["project"]["requires-python"]


def test_vllm_extra_stays_inside_trl_range():
    """TRL's own ``vllm`` extra pins the vLLM versions it supports; ours must not exceed it."""
    from importlib.metadata import requires

    ours = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["vllm"]
    trl_vllm = [r for r in requires("trl") or [] if r.startswith("vllm") and 'extra == "vllm"' in r]
    assert trl_vllm, "trl no longer declares a vllm extra"
    theirs = Requirement(trl_vllm[0].split(";")[0]).specifier
    mine = Requirement(ours[0]).specifier
    assert mine == theirs, f"our vllm extra {mine} differs from TRL's {theirs}"


def _readme_command(label: str) -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- {label} -->\s*```bash\n(.+?)\n```", readme, re.DOTALL)
    assert match, f"README has no fenced command marked <!-- {label} -->"
    return match.group(1).strip()


def test_ci_runs_the_readme_test_command():
    assert _readme_command("test-command") in (ROOT / ".ci" / "run").read_text()


def test_ci_runs_in_a_throwaway_virtualenv():
    """CI must behave like a fresh machine: a new venv, activated before the README's command."""
    script = (ROOT / ".ci" / "run").read_text()
    command = _readme_command("test-command")
    venv = script.find("python3 -m venv")
    activate = script.find("/bin/activate")
    assert venv != -1 and activate != -1, ".ci/run must create and activate a virtualenv"
    assert venv < activate < script.find(command), "the README's test command must run inside the new venv"
    assert "mktemp -d" in script, "the venv must live in a throwaway folder"


def test_test_tools_are_bounded_above():
    """Every package of the ``dev`` extra has an upper bound: a fresh install cannot pull
    a new major release of a test tool unseen (pytest 9 once broke a test on fresh machines)."""
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    unbounded = [spec for spec in dev if not any(s.operator in ("<", "<=", "==", "~=")
                                                 for s in Requirement(spec).specifier)]
    assert not unbounded, f"dev requirements without an upper bound: {unbounded}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_committed_without_outputs(path):
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path.name}: a code cell has saved outputs"
            assert cell.get("execution_count") is None, f"{path.name}: a code cell has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_with_the_house_cells(path):
    notebook = json.loads(path.read_text())
    cells = notebook["cells"]
    text = ["".join(c["source"]) for c in cells]
    assert "colab.research.google.com" in text[0], "first cell must carry the Colab badge"
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    params = "".join(tagged[0]["source"])
    for name in ("preset", "seed", "run_dir", "smoke"):
        assert re.search(rf"^{name}\s*=", params, re.MULTILINE), f"parameters cell lacks {name}"
    assert not re.search(r"(api_key|token|secret|password)\s*=", params, re.IGNORECASE), "no secrets as parameters"
    assert "recap" in text[-1].lower(), "last cell is a short recap"


def _module_level_imports(path: Path) -> set[str]:
    """The ``dynamind_lite`` modules ``path`` imports at module level (not inside
    functions, not under ``if TYPE_CHECKING``): the imports that can form a circle."""
    import ast

    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dynamind_lite"):
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("dynamind_lite"))
    return names


def test_the_package_has_no_import_circle():
    package = ROOT / "dynamind_lite"
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
               for p in package.rglob("*.py")}
    graph = {name: sorted(m for m in _module_level_imports(path) if m in modules and m != name)
             for name, path in modules.items()}
    state: dict[str, str] = {}

    def visit(name: str, stack: list[str]) -> None:
        state[name] = "open"
        for target in graph[name]:
            assert state.get(target) != "open", f"import circle: {' -> '.join(stack + [name, target])}"
            if target not in state:
                visit(target, stack + [name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert "dynamind_lite.resim" in graph["dynamind_lite.collect"]  # the graph is really read


def _set_repository_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("set_repository", ROOT / "scripts" / "set_repository.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_uses_the_one_repository_setting(path):
    repo = _set_repository_module().repository()
    text = path.read_text()
    cells = ["".join(c["source"]) for c in json.loads(text)["cells"]]
    assert f"colab.research.google.com/github/{repo}/blob/main/notebooks/{path.name}" in cells[0], "badge"
    install = next(c for c in cells if c.startswith("# Install"))
    assert f'"DYNAMIND_LITE_REPOSITORY", "https://github.com/{repo}"' in install, "install cell"
    addresses = set(re.findall(r"github(?:\.com)?/([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)", text))
    assert addresses <= {repo}, f"addresses other than the setting: {addresses - {repo}}"


def test_set_repository_restamps_badge_and_install_cell():
    module = _set_repository_module()
    notebook = (ROOT / "notebooks" / "01_mdp_sokoban.ipynb").read_text()
    stamped = module.stamp_notebook(notebook, "someone/fork")
    assert "colab.research.google.com/github/someone/fork/blob/main/notebooks/01_mdp_sokoban.ipynb" in stamped
    assert '\\"DYNAMIND_LITE_REPOSITORY\\", \\"https://github.com/someone/fork\\"' in stamped  # JSON-escaped
    assert module.repository() not in stamped.replace("someone/fork", "")
    assert module.stamp_notebook(stamped, module.repository()) == notebook  # and back, byte for byte

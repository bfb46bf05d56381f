"""The README is tested: its commands exist, its Python runs, its quickstart is what CI runs."""

import re
from pathlib import Path

import pytest
import typer.main

from headrace.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _commands() -> list[str]:
    group = typer.main.get_command(app)
    names = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        names.append(name)
        names.extend(f"{name} {sub}" for sub in getattr(command, "commands", {}))
    return names


@pytest.mark.parametrize("command", _commands())
def test_every_cli_command_is_documented_and_has_help(command: str) -> None:
    assert f"headrace {command}" in README
    group = typer.main.get_command(app)
    target = group
    for part in command.split():
        target = target.commands[part]  # type: ignore[attr-defined]
    assert target.help, f"`headrace {command}` has no help text"


def test_quickstart_has_exactly_two_commands_and_ci_runs_the_test_one() -> None:
    quickstart = README.split("## Quickstart", 1)[1].split("##", 1)[0]
    block = re.search(r"```bash\n(.*?)```", quickstart, re.S)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["python3 dev.py example", "python3 dev.py test"]
    assert "python3 dev.py test" in (ROOT / ".ci" / "run").read_text()
    assert "HEADRACE_REQUIRE_SERVICES=1" in (ROOT / ".ci" / "run").read_text()


def test_readme_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for block in re.findall(r"```python\n(.*?)```", README, re.S):
        exec(compile(block, "README.md", "exec"), namespace)
    test = namespace["test_big_spenders"]
    assert callable(test)
    test()
    project = namespace["project"]
    assert project.read("big_spenders")["user"].to_list() == ["ada"]  # type: ignore[attr-defined]
    project.close()  # type: ignore[attr-defined]

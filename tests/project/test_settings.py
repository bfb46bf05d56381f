from pathlib import Path

import pytest

from headrace.errors import ConfigError
from headrace.project.settings import load_settings


def test_defaults_without_a_file(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={})
    assert settings.storage.root == Path(".headrace")
    assert settings.metadata.url is None
    assert settings.executor.fail_fast is True


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    (tmp_path / "headrace.toml").write_text(
        '[metadata]\nurl = "sqlite:///a.db"\n[executor]\nmax_workers = 2\n[config]\nday = "x"\n'
    )
    settings = load_settings(
        tmp_path,
        environ={
            "HEADRACE_METADATA_URL": "sqlite:///b.db",
            "HEADRACE_EXECUTOR_MAX_WORKERS": "8",
            "HEADRACE_CONFIG_DATA_DIR": "/data",
            "HEADRACE_REQUIRE_SERVICES": "1",  # not a setting: ignored
        },
    )
    assert settings.metadata.url == "sqlite:///b.db"
    assert settings.executor.max_workers == 8
    assert settings.config == {"day": "x", "data_dir": "/data"}


def test_typo_in_a_section_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "headrace.toml").write_text("[executor]\nmax_wrokers = 2\n")
    with pytest.raises(ConfigError, match=r"executor.max_wrokers: Extra inputs"):
        load_settings(tmp_path, environ={})


def test_secrets_are_redacted_in_errors(tmp_path: Path) -> None:
    (tmp_path / "headrace.toml").write_text("[metadata]\nurl = 5\n")
    with pytest.raises(ConfigError) as info:
        load_settings(
            tmp_path, environ={"HEADRACE_EXECUTOR_MAX_WORKERS": "postgresql://u:hunter2@h/d"}
        )
    assert "hunter2" not in str(info.value)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "headrace.toml").write_text("[project\n")
    with pytest.raises(ConfigError, match=r"headrace.toml is not valid TOML"):
        load_settings(tmp_path, environ={})

from pathlib import Path

import pytest

from headrace.errors import ConfigError
from headrace.monitor import AlertSettings, default_rules
from headrace.project.settings import load_settings


def _load(tmp_path: Path, text: str) -> AlertSettings:
    (tmp_path / "headrace.toml").write_text(text, encoding="utf-8")
    return load_settings(tmp_path, environ={}).alerts


def test_without_rules_the_defaults_apply(tmp_path: Path) -> None:
    rules = _load(tmp_path, "").effective_rules()
    assert [(r.kind, r.effective_threshold, r.sinks) for r in rules] == [
        ("quality", 0.9, ("log",)),
        ("duration", 3600.0, ("log",)),
        ("failure", None, ("log",)),
    ]
    assert rules == default_rules()


def test_an_empty_rule_list_turns_alerting_off(tmp_path: Path) -> None:
    assert _load(tmp_path, "[alerts]\nrules = []\n").effective_rules() == ()


def test_rules_and_sinks_from_toml(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        """
[alerts]
default_sinks = ["log", "ops"]

[[alerts.rules]]
name = "quality below 0.95"
kind = "quality"
threshold = 0.95
nodes = ["clean"]
sinks = ["ops"]

[[alerts.rules]]
name = "retrain"
kind = "new_data"
datasets = ["clean"]

[alerts.sinks.ops]
kind = "webhook"
url = "http://127.0.0.1:9/alerts"
retries = 1

[alerts.sinks.retrain]
kind = "command"
command = "python retrain.py --fast"
""",
    )
    quality, retrain = settings.effective_rules()
    assert quality.nodes == ("clean",)
    assert quality.sinks == ("ops",)
    assert quality.effective_severity == "warning"
    assert retrain.sinks == ("log", "ops")  # the default sinks
    assert retrain.effective_threshold == 1.0
    assert retrain.effective_severity == "info"
    assert settings.sinks["ops"].retries == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[alerts.rules]]\nname = "q"\nkind = "qualty"\n',
            r"alert rule 'q': unknown kind 'qualty' \(did you mean 'quality'\?\); set kind to "
            r"one of quality, duration, failure, freshness, drift, quarantine_share, new_data",
        ),
        (
            '[[alerts.rules]]\nname = "q"\nkind = "quality"\nsinks = ["pager"]\n',
            r"alert rule 'q': unknown sink 'pager'; declare \[alerts.sinks.pager\] with kind = "
            r'"log", "webhook" or "command", or use one of log',
        ),
        (
            '[[alerts.rules]]\nname = "q"\nkind = "quality"\nthreshold = 90\n',
            r"alert rule 'q': threshold 90 is out of range; use a value between 0 and 1",
        ),
        (
            '[[alerts.rules]]\nname = "f"\nkind = "failure"\nthreshold = 1\n',
            r"alert rule 'f': kind 'failure' takes no threshold; remove it",
        ),
        (
            '[[alerts.rules]]\nname = "q"\nkind = "quality"\ndatasets = ["x"]\n',
            r"alert rule 'q': kind 'quality' is about nodes: filter with nodes = \[...\]",
        ),
        (
            '[[alerts.rules]]\nname = "a"\nkind = "failure"\n'
            '[[alerts.rules]]\nname = "a"\nkind = "duration"\n',
            r"alert rule 'a' is declared twice",
        ),
        (
            '[alerts.sinks.ops]\nkind = "webhok"\nurl = "http://x"\n',
            r"\[alerts.sinks.ops\]: unknown kind 'webhok' \(did you mean 'webhook'\?\); set kind "
            r"to one of log, webhook, command",
        ),
        (
            '[alerts.sinks.ops]\nkind = "webhook"\n',
            r'\[alerts.sinks.ops\]: a webhook needs url = "http\(s\)://..."',
        ),
        (
            '[alerts.sinks.hook]\nkind = "command"\n',
            r"\[alerts.sinks.hook\]: a command sink needs command = ",
        ),
        (
            '[alerts]\ndefault_sinks = ["slack"]\n',
            r"\[alerts\] default_sinks names unknown sink 'slack'",
        ),
        (
            '[[alerts.rules]]\nname = "q"\nkind = "quality"\ntreshold = 0.5\n',
            r"alerts.rules.0.treshold: Extra inputs are not permitted",
        ),
    ],
)
def test_a_misconfigured_rule_or_sink_is_one_clear_config_error(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        _load(tmp_path, text)
    assert str(info.value).count("\n") == 0


def test_secrets_in_a_bad_sink_do_not_reach_the_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _load(
            tmp_path,
            '[alerts.sinks.ops]\nkind = "webhook"\nurl = "https://u:hunter2@h/x"\nretries = -1\n',
        )
    assert "hunter2" not in str(info.value)
    assert "alerts.sinks.ops.retries" in str(info.value)


def test_metrics_settings(tmp_path: Path) -> None:
    (tmp_path / "headrace.toml").write_text(
        '[metrics]\npushgateway = "http://127.0.0.1:9091"\njob = "nightly"\n', encoding="utf-8"
    )
    metrics = load_settings(tmp_path, environ={}).metrics
    assert (metrics.pushgateway, metrics.job, metrics.push_timeout) == (
        "http://127.0.0.1:9091",
        "nightly",
        10.0,
    )

"""The project's feature store: training sets, materialisation, online lookups, bindings."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

import headrace as hr
from headrace.errors import EntityRowsError, UnknownFeatureError

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def _at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


@pytest.fixture
def shop(feature_project: Path) -> hr.Project:
    project = hr.Project(feature_project)
    project.run().raise_for_status()
    yield project  # type: ignore[misc]
    project.close()


def test_training_set_is_point_in_time_correct_and_recorded(shop: hr.Project) -> None:
    rows = pl.DataFrame(
        {
            "user": ["ada", "bob", "ada", "zed", None, "ada"],
            "event_timestamp": [_at(1), _at(1), _at(2), _at(5), _at(5), _at(40)],
            "label": [0, 1, 0, 1, 0, 1],
        }
    )
    built = shop.features.get_training_data(rows, "fraud")
    frame = built.frame
    assert frame.columns == [
        "user",
        "event_timestamp",
        "label",
        "spend__spend_1d",
        "spend__payments_1d",
        "spend__big",
        "spend__country",
    ]
    # ada@40h: her newest row (26 h) is 14 h old, inside the 1-day TTL
    assert frame["spend__spend_1d"].to_list() == [10.0, 5.0, 40.0, None, None, 2.0]
    assert frame["spend__payments_1d"].to_list() == [1, 1, 2, None, None, 1]
    assert frame["spend__big"].to_list() == [False, False, True, None, None, False]
    assert frame["label"].to_list() == rows["label"].to_list()  # input order kept
    assert built.unusable_rows == 1
    recorded = shop.features.registry.training_sets("fraud")
    assert recorded[0].training_set_id == built.record.training_set_id
    assert recorded[0].inputs["spend"]["view_version"] == 1


def test_materialize_then_lookup_reports_present_missing_and_expired(shop: hr.Project) -> None:
    results = shop.features.materialize(as_of=_at(30))
    assert [(r.view, r.rows, r.incremental) for r in results] == [("spend", 3, False)]
    again = shop.features.materialize(as_of=_at(30))
    assert again[0].skipped
    found = shop.features.get_online_features(
        "fraud", [{"user": "ada"}, {"user": "bob"}, {"user": "nobody"}], as_of=_at(30)
    )
    assert found.version == 1
    assert found.features == (
        "spend__spend_1d",
        "spend__payments_1d",
        "spend__big",
        "spend__country",
    )
    assert found.values[0] == [2.0, 1, False, "fr"]  # ada's newest row (26 h), 1-day window
    assert found.statuses[0] == ["present"] * 4
    assert found.statuses[1] == ["expired"] * 4  # bob's only row is 29 h old, TTL 1 day
    assert found.values[1] == [None] * 4
    assert found.statuses[2] == ["missing"] * 4
    assert found.to_dicts()[0]["spend__country"] == "fr"


def test_a_late_materialisation_never_overwrites_a_newer_value(shop: hr.Project) -> None:
    shop.features.materialize(as_of=_at(30))
    shop.features.materialize(as_of=_at(2))  # older point in time: older values
    found = shop.features.get_online_features("fraud", [{"user": "ada"}], as_of=_at(30))
    assert found.values[0][0] == 2.0  # still the 26 h value


def test_model_bindings_pin_the_feature_set_version(shop: hr.Project) -> None:
    binding = shop.features.bind_model("fraud_model", "1", "fraud")
    assert (binding.feature_set, binding.feature_set_version) == ("fraud", 1)
    assert shop.features.bind_model("fraud_model", "1", "fraud") == binding
    chosen = shop.features.feature_set("", model="fraud_model", model_version="1")
    assert chosen.version == 1
    with pytest.raises(UnknownFeatureError, match="not bound to a feature set"):
        shop.features.feature_set("", model="fraud_model", model_version="2")
    with pytest.raises(UnknownFeatureError, match="no version 7"):
        shop.features.bind_model("fraud_model", "3", "fraud", version=7)


def test_unknown_names_and_bad_keys_get_clear_errors(shop: hr.Project) -> None:
    with pytest.raises(UnknownFeatureError, match=r"no feature set 'frad'.*known: fraud"):
        shop.features.get_online_features("frad", [{"user": "ada"}])
    with pytest.raises(EntityRowsError, match="lacks join key 'user'"):
        shop.features.get_online_features("fraud", [{"usr": "ada"}])
    with pytest.raises(EntityRowsError, match="no timestamp column 'ts'"):
        shop.features.get_training_data(pl.DataFrame({"user": ["a"]}), "fraud", timestamp="ts")
    with pytest.raises(UnknownFeatureError, match="no computed feature view named nope"):
        shop.features.materialize(["nope"])


def test_materialize_and_lookup_through_redis(feature_project: Path, redis_url: str) -> None:
    from headrace.project.settings import load_settings

    settings = load_settings(
        feature_project,
        {
            "HEADRACE_FEATURES_ONLINE_STORE": redis_url,
            "HEADRACE_PROJECT_NAME": f"shop_{secrets.token_hex(4)}",  # its own key namespace
        },
    )
    with hr.Project(feature_project, settings) as project:
        project.run().raise_for_status()
        store = project.features.online_store
        try:
            assert project.features.materialize(as_of=_at(30))[0].rows == 3
            found = project.features.get_online_features(
                "fraud", [{"user": "ada"}, {"user": "bob"}], as_of=_at(30)
            )
            assert found.values[0] == [2.0, 1, False, "fr"]
            assert found.statuses[1] == ["expired"] * 4
        finally:
            from headrace.storage.online.base import OnlineTable

            store.drop([OnlineTable("spend", 1, (), ())])


def test_materialisation_is_incremental_after_an_incremental_view_update(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()

    def payments(name: str, rows: list[tuple[str, int]]) -> None:
        pl.DataFrame(
            {"user": [u for u, _ in rows], "ts": [_at(h).isoformat() for _, h in rows]}
        ).write_csv(inbox / name)

    pipeline = hr.Pipeline("inc")
    pipeline.ingest(
        "events",
        hr.files(str(inbox / "*.csv"), incremental=True),
        contract=hr.Contract(
            "events", fields=[hr.Field("user", "String"), hr.Field("ts", "Datetime[UTC]")]
        ),
    )
    pipeline.features(
        hr.FeatureView(
            "activity",
            entity=hr.Entity("user", ["user"]),
            source="events",
            event_time="ts",
            ttl="30d",
            features=[hr.Aggregate(None, "count", "30d", name="events_30d")],
        )
    )
    pipeline.feature_set(hr.FeatureSet("act", ["activity:events_30d"]))
    payments("1.csv", [(f"u{i}", i) for i in range(50)])
    with hr.Project.create(tmp_path / "p") as project:
        project.run(pipeline).raise_for_status()
        first = project.features.materialize(as_of=_at(100))
        assert (first[0].rows, first[0].incremental) == (50, False)
        payments("2.csv", [("u3", 60), ("u7", 61)])
        project.run(pipeline).raise_for_status()
        second = project.features.materialize(as_of=_at(100))
        assert (second[0].rows, second[0].incremental) == (2, True)  # only what was recomputed
        found = project.features.get_online_features(
            "act", [{"user": "u3"}, {"user": "u4"}], as_of=_at(100)
        )
        assert found.values == [[2], [1]]

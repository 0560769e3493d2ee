"""Registry aliases (MLflow style): one version per alias, beside the stages, durable."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import synarrow
from synarrow import (
    InvalidArgumentError,
    InvalidStateError,
    NotFoundError,
    ReadOnlyError,
)


@pytest.fixture
def reg(tmp_path: Path):
    r = synarrow.ModelRegistry(tmp_path / "models.db")
    for i in range(3):
        r.save_model("clf", f"weights {i + 1}".encode())
    yield r
    r.close()


def test_set_get_load_move_and_delete(reg: synarrow.ModelRegistry) -> None:
    v = reg.set_alias("clf", "champion", 2)
    assert (v.version, v.aliases) == (2, ("champion",))
    assert reg.get_by_alias("clf", "champion") == v
    data, info = reg.load_model("clf", alias="champion")
    assert data == b"weights 2" and info.version == 2
    reg.set_alias("clf", "challenger", 3)
    assert reg.aliases("clf") == {"challenger": 3, "champion": 2}
    moved = reg.set_alias("clf", "champion", 3)  # an alias points at one version at a time
    assert moved.aliases == ("challenger", "champion")
    assert reg.get_version("clf", 2).aliases == ()
    assert [v.aliases for v in reg.list_versions("clf")] == [(), (), ("challenger", "champion")]
    reg.delete_alias("clf", "challenger")
    assert reg.aliases("clf") == {"champion": 3}
    assert [version for _, version in reg.alias_history("clf", "champion")] == [2, 3]
    assert [version for _, version in reg.alias_history("clf", "challenger")] == [3, None]


def test_stages_and_aliases_are_independent(reg: synarrow.ModelRegistry) -> None:
    reg.set_alias("clf", "champion", 1)
    prod = reg.set_stage("clf", 1, "Production")
    assert (prod.stage, prod.aliases) == ("Production", ("champion",))
    assert reg.get_production("clf").aliases == ("champion",)  # type: ignore[union-attr]
    assert reg.get_by_alias("clf", "champion").stage == "Production"
    assert [s for _, s in reg.stage_history("clf", 1)] == ["Development", "Production"]
    assert reg.load_model("clf", "Production")[1].aliases == ("champion",)


def test_setting_the_same_alias_again_writes_nothing(reg: synarrow.ModelRegistry) -> None:
    reg.set_alias("clf", "champion", 1)
    reg.set_alias("clf", "champion", 1)
    assert len(reg.alias_history("clf", "champion")) == 1


def test_round_trip_through_reopen_and_read_only(reg: synarrow.ModelRegistry) -> None:
    reg.set_alias("clf", "champion", 2)
    reg.set_alias("clf", "old", 1)
    reg.delete_alias("clf", "old")
    path = reg.path
    reg.close()
    with synarrow.ModelRegistry(path) as again:
        assert again.aliases("clf") == {"champion": 2}
        assert again.load_model("clf", alias="champion")[0] == b"weights 2"
    with synarrow.ModelRegistry(path, readonly=True) as ro:
        assert ro.get_by_alias("clf", "champion").version == 2
        assert ro.get_version("clf", 2).aliases == ("champion",)
        with pytest.raises(ReadOnlyError):
            ro.set_alias("clf", "x", 1)
        with pytest.raises(ReadOnlyError):
            ro.delete_alias("clf", "champion")


@pytest.mark.parametrize(
    "alias",
    ["", "3", "1.5", "-2", "1e3", "nan", "inf", "a/b", "a b", "x" * 65, "é", "a*", None, 3],
)
def test_unsafe_or_numeric_alias_names_are_refused(reg: synarrow.ModelRegistry, alias) -> None:
    with pytest.raises(InvalidArgumentError, match="invalid alias"):
        reg.set_alias("clf", alias, 1)
    with pytest.raises(InvalidArgumentError, match="invalid alias"):
        reg.get_by_alias("clf", alias)
    assert reg.aliases("clf") == {}


def test_longest_and_dotted_names_are_fine(reg: synarrow.ModelRegistry) -> None:
    for alias in ("a" * 64, "prod-eu.v2_b", "v3", "Champion", "next_version"):
        reg.set_alias("clf", alias, 1)
    assert set(reg.aliases("clf")) == {"a" * 64, "prod-eu.v2_b", "v3", "Champion", "next_version"}
    assert reg.list_models() == ["clf"]  # no alias key reads as another model
    assert [v.version for v in reg.list_versions("clf")] == [1, 2, 3]


def test_missing_things_are_not_found(reg: synarrow.ModelRegistry) -> None:
    with pytest.raises(NotFoundError, match="no version 9"):
        reg.set_alias("clf", "champion", 9)
    with pytest.raises(NotFoundError, match="'other' not found"):
        reg.set_alias("other", "champion", 1)
    with pytest.raises(NotFoundError, match="no alias 'champion'"):
        reg.get_by_alias("clf", "champion")
    with pytest.raises(NotFoundError, match="no alias 'champion'"):
        reg.load_model("clf", alias="champion")
    with pytest.raises(NotFoundError, match="no alias 'champion'"):
        reg.delete_alias("clf", "champion")
    with pytest.raises(NotFoundError, match="no alias"):
        reg.alias_history("clf", "champion")
    reg.set_alias("clf", "champion", 1)
    reg.delete_alias("clf", "champion")
    with pytest.raises(NotFoundError, match=r"aliases: none"):
        reg.get_by_alias("clf", "champion")
    with pytest.raises(InvalidArgumentError, match="version must be an int"):
        reg.set_alias("clf", "champion", "2")  # type: ignore[arg-type]


def test_version_and_alias_together_are_refused(reg: synarrow.ModelRegistry) -> None:
    reg.set_alias("clf", "champion", 1)
    with pytest.raises(InvalidArgumentError, match="not both"):
        reg.load_model("clf", 1, alias="champion")
    with pytest.raises(InvalidArgumentError, match="not both"):
        reg.lineage("clf", 1, alias="champion")


def test_deleting_an_aliased_version_is_refused_naming_the_alias(
    reg: synarrow.ModelRegistry,
) -> None:
    reg.set_alias("clf", "champion", 2)
    with pytest.raises(InvalidStateError, match="'champion'") as err:
        reg.delete_version("clf", 2)
    assert "set_alias" in str(err.value)
    assert reg.load_model("clf", 2)[0] == b"weights 2"  # untouched
    reg.set_alias("clf", "champion", 3)
    reg.delete_version("clf", 2)
    assert [v.version for v in reg.list_versions("clf")] == [1, 3]


def test_models_with_nested_names_keep_their_own_aliases(reg: synarrow.ModelRegistry) -> None:
    reg.save_model("clf/small", b"tiny")
    reg.set_alias("clf/small", "champion", 1)
    reg.set_alias("clf", "champion", 3)
    assert reg.aliases("clf") == {"champion": 3}
    assert reg.aliases("clf/small") == {"champion": 1}
    assert reg.load_model("clf/small", alias="champion")[0] == b"tiny"


def test_alias_is_durable_when_the_process_dies_at_once(tmp_path: Path) -> None:
    code = """
        import os, sys, synarrow
        reg = synarrow.ModelRegistry(sys.argv[1])
        reg.save_model("clf", b"a"); reg.save_model("clf", b"b")
        reg.set_alias("clf", "champion", 2)
        reg.set_alias("clf", "gone", 1); reg.delete_alias("clf", "gone")
        os._exit(0)  # no close: only what the calls made durable survives
    """
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(tmp_path / "m.db")], check=True
    )
    with synarrow.ModelRegistry(tmp_path / "m.db") as reg:
        assert reg.aliases("clf") == {"champion": 2}


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["set", "delete"]),
            st.sampled_from(["champion", "challenger", "shadow"]),
            st.integers(1, 3),
        ),
        max_size=12,
    )
)
def test_aliases_follow_a_dict_model_across_reopen(tmp_path_factory, ops) -> None:
    path = tmp_path_factory.mktemp("aliases") / "m.db"
    model: dict[str, int] = {}
    with synarrow.ModelRegistry(path) as reg:
        for i in range(3):
            reg.save_model("m", bytes([i]))
        for op, alias, version in ops:
            if op == "set":
                reg.set_alias("m", alias, version)
                model[alias] = version
            elif alias in model:
                reg.delete_alias("m", alias)
                del model[alias]
            else:
                with pytest.raises(NotFoundError):
                    reg.delete_alias("m", alias)
        assert reg.aliases("m") == dict(sorted(model.items()))
    with synarrow.ModelRegistry(path, readonly=True) as reg:
        assert reg.aliases("m") == dict(sorted(model.items()))
        for v in reg.list_versions("m"):
            assert v.aliases == tuple(sorted(a for a, n in model.items() if n == v.version))

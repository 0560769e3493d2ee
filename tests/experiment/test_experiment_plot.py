"""plot_metrics: needs matplotlib (an optional extra); skipped cleanly without it."""

from __future__ import annotations

from pathlib import Path

import pytest

import synarrow

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


def test_plot_metrics_one_axes_per_metric(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    with synarrow.Experiment("e", tmp_path / "exp.db") as exp:
        ids = []
        for scale in (1.0, 2.0):
            with exp.start_run(f"s{scale}") as run:
                for i in range(20):
                    run.log_metrics({"loss": scale / (i + 1), "acc": i * scale}, step=i)
            ids.append(run.id)
        fig = exp.plot_metrics(ids, ["loss", "acc"])
        try:
            axes = fig.get_axes()
            assert [a.get_ylabel() for a in axes] == ["loss", "acc"]
            assert all(len(a.get_lines()) == 2 for a in axes)
            assert [line.get_label() for line in axes[0].get_lines()] == ["s1.0", "s2.0"]
            xs = axes[0].get_lines()[0].get_xdata()
            assert list(xs) == list(range(20))
            fig.savefig(tmp_path / "plot.png")
            assert (tmp_path / "plot.png").stat().st_size > 0
        finally:
            plt.close(fig)
        fig2, ax = plt.subplots()
        try:
            assert exp.plot_metrics(ids[0], "loss", ax=ax, x="time") is fig2
            assert len(ax.get_lines()) == 1
        finally:
            plt.close(fig2)
        with pytest.raises(synarrow.InvalidArgumentError):
            exp.plot_metrics(ids, "loss", x="epoch")

"""Issue 17's benchmark (pure parts, benchmarks/_ratios.py): ratios per round and of the
medians, the ledger's added CPU, the goals' verdicts and the markdown tables; and that
``benchmarks.issue17`` imports and parses its options without connecting anywhere."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from benchmarks._ratios import (
    added_cpu,
    markdown_table,
    per_round,
    ratio_of_medians,
    summarize,
    summarize_enqueue,
    tables,
    verdict,
)
from tests.support.processes import ROOT


def cpu(main: float, children: float, postgresql: float, redis: float = 0.5) -> dict[str, float]:
    return {
        "cpu_worker_main_ms": main,
        "cpu_pool_children_ms": children,
        "cpu_postgresql_ms": postgresql,
        "cpu_redis_ms": redis,
    }


def worker_round(a: float, b: float, c: float, p: float | None = None) -> dict[str, dict]:
    found = {
        "a": {"tasks_per_s": a, **cpu(2.0, 0.3, 0.0)},
        "b": {"tasks_per_s": b, **cpu(3.0, 3.5, 1.0)},
        "c": {"tasks_per_s": c, **cpu(2.5, 1.0, 1.0)},
    }
    if p is not None:
        found["p"] = {"tasks_per_s": p, **cpu(2.0, 0.0, 1.2)}
    return found


def test_ratios_per_round_and_of_the_medians() -> None:
    rounds = [{"c": 90.0, "a": 100.0}, {"c": 40.0, "a": 50.0}, {"c": 120.0, "a": 200.0}]

    assert per_round(rounds, "c", "a") == pytest.approx([0.9, 0.8, 0.6])
    assert ratio_of_medians(rounds, "c", "a") == pytest.approx(90 / 100)


def test_added_cpu_sums_main_children_and_postgresql_not_redis() -> None:
    ledger, plain = cpu(2.5, 1.0, 1.0, redis=9.0), cpu(2.0, 0.3, 0.0, redis=0.1)

    assert added_cpu(ledger, plain) == pytest.approx(0.5 + 0.7 + 1.0)


def test_a_goal_is_met_only_when_every_round_reaches_it() -> None:
    assert verdict([0.9, 0.95, 1.2], 0.9) == "met"
    assert verdict([0.9, 0.89, 1.2], 0.9) == "missed in 1 of 3"


def test_markdown_table_formats_floats_and_leaves_none_empty() -> None:
    table = markdown_table(["what", "x", "y"], [["rate", 1234.567, 0.8456], ["none", None, 3]])

    assert table.splitlines() == [
        "| what | x | y |",
        "|---|---|---|",
        "| rate | 1234.6 | 0.85 |",
        "| none |  | 3 |",
    ]


def test_summary_of_three_worker_rounds() -> None:
    rounds = [worker_round(100, 50, 90), worker_round(200, 80, 160), worker_round(150, 70, 120)]

    summary = summarize(rounds)

    assert summary["c_over_a"]["rounds"] == pytest.approx([0.9, 0.8, 0.8])
    assert summary["c_over_a"]["of_medians"] == pytest.approx(120 / 150)
    assert summary["added_cpu_ms_per_job"]["of_medians"] == pytest.approx(0.5 + 0.7 + 1.0)
    assert summary["c_over_b"]["rounds"] == pytest.approx([1.8, 2.0, 120 / 70])
    assert "c_over_p" not in summary  # Procrastinate not installed: no ratio
    assert summary["added_cpu_ms_per_job"]["median"] == pytest.approx(0.5 + 0.7 + 1.0)
    assert summary["tasks_per_s_median"] == {"a": 150, "b": 70, "c": 120}


def test_summary_with_procrastinate() -> None:
    summary = summarize([worker_round(100, 50, 90, p=60), worker_round(100, 50, 90, p=45)])

    assert summary["c_over_p"]["rounds"] == pytest.approx([1.5, 2.0])


def test_enqueue_summary_and_the_table_with_its_verdicts() -> None:
    enqueue = summarize_enqueue(
        {"plain": [1000.0, 800.0, 900.0], "ledger": [850.0, 600.0, 720.0], "bulk": [3e3, 3e3, 3e3]}
    )
    figures = {
        "worker": summarize([worker_round(100, 50, 90)] * 3),
        "enqueue_redis": enqueue,
    }

    assert enqueue["ledger_over_plain"]["rounds"] == pytest.approx([0.85, 0.75, 0.8])
    assert enqueue["bulk_over_plain"]["of_medians"] == pytest.approx(3000 / 900)
    text = tables(figures, 3)
    lines = text.splitlines()
    assert lines[0] == (
        "| measure | round 1 | round 2 | round 3 | median of rounds | of the medians | goal "
        "| verdict |"
    )
    assert (
        "| worker: ledger ÷ plain Celery | 0.90 | 0.90 | 0.90 | 0.90 | 0.90 "
        "| ≥ 0.9 every round | met |"
    ) in lines
    assert any(
        line.startswith("| enqueue (redis): ledger delay() ÷ plain delay() | 0.85 | 0.75 | 0.80")
        and line.endswith("| missed in 1 of 3 |")
        for line in lines
    )
    assert any(
        line.startswith("| enqueue (redis): apply_many") and "| met |" in line for line in lines
    )
    assert "Procrastinate" not in text
    assert "rabbitmq" not in text


def test_the_benchmark_imports_and_parses_its_options_without_connecting() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JOBLEDGER_BENCH_ADMIN_URL": "postgresql+psycopg2://nobody@127.0.0.1:1/postgres",
        "JOBLEDGER_BENCH_REDIS_URL": "redis://127.0.0.1:1/0",
    }
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.issue17", "--help"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert out.returncode == 0, out.stderr
    for option in ("--n", "--rounds", "--enqueue-n", "--rabbitmq", "--no-record"):
        assert option in out.stdout

"""The pure parts of :mod:`benchmarks.issue17`: ratios per round and of the medians, the
ledger's added CPU, the goals' verdicts and the markdown tables. Nothing here connects or
sets the environment (unlike ``benchmarks._harness``), so the unit tests import it.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

#: Worker variants: throughput's letters, and ``p`` for Procrastinate.
LABELS = {
    "a": "plain Celery",
    "b": "Celery SQLAlchemy result backend",
    "c": "ledger",
    "p": "Procrastinate",
}
#: Enqueue variants, in their order in a round and in the tables.
ENQUEUE_VARIANTS = ("plain", "ledger", "bulk", "procrastinate")
#: Groups of processes whose CPU makes "the ledger's added CPU per job".
CPU_GROUPS = ("worker_main", "pool_children", "postgresql")
GOALS = {
    "c_over_a": 0.9,
    "enqueue_ledger_over_plain": 0.8,
    "enqueue_bulk_over_plain": 3.0,
}


def per_round(rounds: Sequence[dict[str, float]], numerator: str, denominator: str) -> list[float]:
    """``numerator / denominator`` of each round (rounds: variant -> value)."""
    return [r[numerator] / r[denominator] for r in rounds]


def ratio_of_medians(rounds: Sequence[dict[str, float]], numerator: str, denominator: str) -> float:
    """The median of ``numerator`` over the rounds divided by that of ``denominator``."""
    return statistics.median(r[numerator] for r in rounds) / statistics.median(
        r[denominator] for r in rounds
    )


def added_cpu(figures: dict[str, float], baseline: dict[str, float]) -> float:
    """CPU ms per job of :data:`CPU_GROUPS` in ``figures`` minus the same in ``baseline``."""
    return sum(figures[f"cpu_{g}_ms"] - baseline[f"cpu_{g}_ms"] for g in CPU_GROUPS)


def verdict(values: Sequence[float], goal: float) -> str:
    """``met`` when every value reaches ``goal``, else how many rounds missed it."""
    missed = sum(1 for value in values if value < goal)
    return "met" if not missed else f"missed in {missed} of {len(values)}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table; floats with two decimals (one above 100), None as an empty cell."""

    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.1f}" if abs(value) >= 100 else f"{value:.2f}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def summarize(worker_rounds: list[dict[str, dict[str, float]]]) -> dict[str, Any]:
    """The worker part's ratios (per round and of the medians) and the added CPU (per
    round, their median, and the difference of the variants' medians)."""
    if not worker_rounds:
        return {}
    rates = [{v: f["tasks_per_s"] for v, f in r.items()} for r in worker_rounds]
    variants = list(rates[0])
    summary: dict[str, Any] = {
        "tasks_per_s": {v: [r[v] for r in rates] for v in variants},
        "tasks_per_s_median": {v: statistics.median(r[v] for r in rates) for v in variants},
    }
    for other in ("a", "b", "p"):
        if "c" in variants and other in variants:
            summary[f"c_over_{other}"] = {
                "rounds": per_round(rates, "c", other),
                "of_medians": ratio_of_medians(rates, "c", other),
            }
    summary["cpu_ms_per_job_median"] = {
        v: {
            key: statistics.median(r[v][key] for r in worker_rounds)
            for key in worker_rounds[0][v]
            if key.startswith("cpu_")
        }
        for v in variants
    }
    if "a" in variants and "c" in variants:
        added = [added_cpu(r["c"], r["a"]) for r in worker_rounds]
        medians = summary["cpu_ms_per_job_median"]
        summary["added_cpu_ms_per_job"] = {
            "rounds": added,
            "median": statistics.median(added),
            "of_medians": added_cpu(medians["c"], medians["a"]),
        }
    return summary


def summarize_enqueue(rates: dict[str, list[float]]) -> dict[str, Any]:
    """Medians and the ratios of an enqueue part (variant -> jobs/s per round)."""
    medians = {v: statistics.median(values) for v, values in rates.items()}
    out: dict[str, Any] = {"jobs_per_s": rates, "jobs_per_s_median": medians}
    for variant in ("ledger", "bulk", "procrastinate"):
        if variant in rates and "plain" in rates:
            out[f"{variant}_over_plain"] = {
                "rounds": [x / p for x, p in zip(rates[variant], rates["plain"], strict=True)],
                "of_medians": medians[variant] / medians["plain"],
            }
    return out


def tables(figures: dict[str, Any], rounds: int) -> str:
    """The markdown tables of a run's figures (:func:`main`'s ``figures``)."""
    numbers = [f"round {i}" for i in range(1, rounds + 1)]
    out: list[str] = []
    rows: list[list[Any]] = []
    worker = figures.get("worker", {})

    def ratio_row(label: str, found: dict[str, Any] | None, goal: float | None) -> None:
        if found is None:
            return
        judged = verdict(found["rounds"], goal) if goal is not None else ""
        goal_text = f"≥ {goal:g} every round" if goal is not None else ""
        rows.append(
            [
                label,
                *found["rounds"],
                statistics.median(found["rounds"]),
                found["of_medians"],
                goal_text,
                judged,
            ]
        )

    ratio_row("worker: ledger ÷ plain Celery", worker.get("c_over_a"), GOALS["c_over_a"])
    ratio_row("worker: ledger ÷ Celery SQLAlchemy result backend", worker.get("c_over_b"), None)
    ratio_row("worker: ledger ÷ Procrastinate", worker.get("c_over_p"), None)
    if "added_cpu_ms_per_job" in worker:
        added = worker["added_cpu_ms_per_job"]
        rows.append(
            [
                "ledger's added CPU ms/job (main + children + PostgreSQL)",
                *added["rounds"],
                added["median"],
                added.get("of_medians"),
                "half of before",
                "",
            ]
        )
    for broker in ("redis", "rabbitmq"):
        found = figures.get(f"enqueue_{broker}")
        if not found:
            continue
        ratio_row(
            f"enqueue ({broker}): ledger delay() ÷ plain delay()",
            found.get("ledger_over_plain"),
            GOALS["enqueue_ledger_over_plain"],
        )
        ratio_row(
            f"enqueue ({broker}): apply_many ÷ plain delay() loop",
            found.get("bulk_over_plain"),
            GOALS["enqueue_bulk_over_plain"],
        )
        ratio_row(
            "enqueue: Procrastinate batch_defer ÷ plain delay() loop",
            found.get("procrastinate_over_plain"),
            None,
        )
    header = ["measure", *numbers, "median of rounds", "of the medians", "goal", "verdict"]
    out.append(markdown_table(header, rows))

    if worker:
        rate_rows = [
            [f"{v} {LABELS[v]}", *worker["tasks_per_s"][v], worker["tasks_per_s_median"][v]]
            for v in worker["tasks_per_s"]
        ]
        out.append(markdown_table(["worker jobs/s", *numbers, "median"], rate_rows))
        cpu_rows = []
        for v, cpu in worker["cpu_ms_per_job_median"].items():
            cells = [cpu.get(f"cpu_{g}_ms") for g in (*CPU_GROUPS, "redis")]
            total = sum(cpu.get(f"cpu_{g}_ms", 0.0) for g in CPU_GROUPS)
            cpu_rows.append([f"{v} {LABELS[v]}", *cells, total])
        out.append(
            markdown_table(
                [
                    "CPU ms/job (medians)",
                    "worker main",
                    "pool children",
                    "PostgreSQL (own backends)",
                    "Redis (whole server)",
                    "main + children + PostgreSQL",
                ],
                cpu_rows,
            )
        )
    for broker in ("redis", "rabbitmq"):
        found = figures.get(f"enqueue_{broker}")
        if found:
            enqueue_rows = [
                [variant, *found["jobs_per_s"][variant], found["jobs_per_s_median"][variant]]
                for variant in ENQUEUE_VARIANTS
                if variant in found["jobs_per_s"]
            ]
            out.append(
                markdown_table([f"enqueue jobs/s ({broker})", *numbers, "median"], enqueue_rows)
            )
    return "\n\n".join(out)


def main() -> None:
    """Print the tables of a recorded run again: ``python -m benchmarks._ratios
    [results/issue17.jsonl [LINE]]`` (default: the file's last line)."""
    import json
    import sys
    from pathlib import Path

    path = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/issue17.jsonl")
    lines = path.read_text().splitlines()
    document = json.loads(lines[int(sys.argv[2]) - 1 if len(sys.argv) > 2 else -1])
    machine, parameters = document["machine"], document["parameters"]
    print(
        f"{document['at']}, git {document['git']}: {machine.get('cpu_model', '')}, "
        f"{machine['cpus']} cores, {machine['memory_gib']} GiB, PostgreSQL "
        f"{machine['postgresql']}, Redis {machine.get('redis', '?')}"
        + (f", RabbitMQ {found}" if (found := document["figures"].get("rabbitmq")) else "")
        + "; "
        + ", ".join(f"{key} {value}" for key, value in parameters.items())
        + "\n"
    )
    print(tables(document["figures"], parameters["rounds"]))


if __name__ == "__main__":
    main()

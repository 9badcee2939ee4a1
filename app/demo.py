"""A demo batch of real jobs through a running worker, then the ledger they left.

Run by ``bash .ci/demo`` (which installs, starts the services and a worker first), or by
hand with a worker running: ``python -m app.demo``. It makes its input files under
``var/data/demo`` (inside ``var/data``, the one folder file sources may be read from by
default: ``JOBLEDGER_SOURCE_ROOTS``), submits an import with a few bad rows (ends
``partial``), an export of the imported dataset, a ``sync_and_suggest`` chain, an import
of a missing file (ends ``failed``) and a job canceled while queued, waits for all of
them in the ledger, and prints what an operator would look at.
"""

from __future__ import annotations

import csv
import time
import uuid
from pathlib import Path

from sqlalchemy import bindparam, text

from app import db
from app.ledger import transitions as ledger
from app.ledger.rules.states import TERMINAL
from tasks._settings import DATA_DIR

DEMO_DIR = DATA_DIR / "demo"


def write_inputs(folder: Path) -> tuple[Path, Path]:
    """A 2,000-row CSV with 3 bad amounts, and a bank file for the sync."""
    folder.mkdir(parents=True, exist_ok=True)
    sales = folder / "sales.csv"
    with sales.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["order_id", "customer", "amount"])
        for number in range(1, 2001):
            amount = "n/a" if number in (10, 500, 1999) else f"{number * 1.5:.2f}"
            writer.writerow([number, f"customer-{number % 37}", amount])
    bank = folder / "bank.csv"
    with bank.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "date", "payee", "amount", "category", "updated_at"])
        payees = [("Grocer Ltd", "food"), ("City Power", "utilities"), ("Bus Co", "transport")]
        for number in range(1, 61):
            payee, category = payees[number % 3]
            known = "" if number % 5 == 0 else category  # every 5th needs a suggestion
            writer.writerow(
                [
                    number,
                    f"2026-11-{1 + number % 28:02d}",
                    payee,
                    -number,
                    known,
                    f"2026-11-24T10:{number % 60:02d}:00",
                ]
            )
    return sales, bank


def submit(sales: Path, bank: Path) -> dict[str, str]:
    """Queue the demo jobs; returns ``{label: job id}``."""
    from tasks import import_data, sync_and_suggest

    jobs = {
        "import (3 bad rows)": import_data.delay(
            str(sales), "demo_sales", key="order_id", columns={"amount": "decimal"}
        ).id,
        "sync_and_suggest": sync_and_suggest.delay("demo-household", str(bank)).id,
        "import (missing file)": import_data.delay(
            str(sales.with_name("nope.csv")), "demo_missing"
        ).id,
    }
    doomed = import_data.apply_async(
        kwargs={"source": str(sales), "dataset": "demo_never"},
        queue=f"nobody-{uuid.uuid4().hex[:6]}",
    )
    ledger.request_cancel(uuid.UUID(doomed.id), actor="cli", reason="demo: canceled while queued")
    jobs["import (canceled while queued)"] = doomed.id
    return jobs


def wait(job_ids: list[str], timeout: float = 120) -> None:
    """Poll the ledger until every job is terminal (prints progress while it waits)."""
    deadline = time.monotonic() + timeout
    terminal = tuple(status.value for status in TERMINAL)
    while time.monotonic() < deadline:
        with db.engine().connect() as connection:
            rows = connection.execute(
                text("SELECT status, progress FROM jobs WHERE id IN :ids").bindparams(
                    bindparam("ids", expanding=True)
                ),
                {"ids": [uuid.UUID(job_id) for job_id in job_ids]},
            ).all()
        done = sum(1 for status, _ in rows if status in terminal)
        print(f"  {done}/{len(job_ids)} jobs finished", flush=True)
        if done >= len(job_ids):
            return
        time.sleep(1)  # poll interval while the worker works
    raise SystemExit(
        "the demo jobs did not finish in time: is a worker running? "
        "(`celery -A app worker` — `bash .ci/demo` starts one)"
    )


def main() -> None:
    sales, bank = write_inputs(DEMO_DIR)
    jobs = submit(sales, bank)
    print(f"queued {len(jobs)} jobs; waiting for the worker…")
    wait(list(jobs.values()))
    from tasks import export_data

    exported = export_data.delay("demo_sales", format="csv").id
    wait([exported])
    jobs["export"] = exported
    with db.engine().connect() as connection:
        print(f"\n{'job':32} {'name':18} {'status':10} {'progress':>8}  reason / result")
        for label, job_id in jobs.items():
            row = connection.execute(
                text(
                    "SELECT name, status, progress, failure_reason, result, result_url "
                    "FROM jobs WHERE id = :id"
                ),
                {"id": job_id},
            ).one()
            detail = row.failure_reason or row.result_url or row.result
            print(
                f"{label:32} {row.name:18} {row.status:10} {row.progress:>7}%  {str(detail)[:70]}"
            )
    chain_id = jobs["sync_and_suggest"]
    print("\nhistory of the chain (`jobledger show` prints the same):")
    with db.engine().connect() as connection:
        for event in connection.execute(
            text(
                "SELECT e.created_at, s.position, e.from_status, e.to_status, e.actor, "
                "e.message FROM job_events e LEFT JOIN job_steps s ON s.id = e.step_id "
                "WHERE e.job_id = :id ORDER BY e.id"
            ),
            {"id": chain_id},
        ):
            where = "job" if event.position is None else f"step {event.position}"
            print(
                f"  {event.created_at:%H:%M:%S} {where:7} {event.from_status or '-':>9} -> "
                f"{event.to_status:10} {event.actor:7} {event.message}"
            )


if __name__ == "__main__":
    main()

"""A demo batch of real jobs through a running worker, then the ledger they left.

Run by ``bash .ci/demo`` (which installs, migrates and starts a worker first), or by hand
with a worker running: ``python -m app.demo``. It runs on whatever ledger and broker the
environment names: with no ``JOBLEDGER_*`` variable, the embedded default (the SQLite
file ``var/jobledger.sqlite3`` and the filesystem broker under ``var/broker``, no server).

It makes its input files under ``var/data/demo`` (inside ``var/data``, the one folder
file sources may be read from by default: ``JOBLEDGER_SOURCE_ROOTS``), submits an import
with a few bad rows (ends ``partial``), an export of the imported dataset, a
``sync_and_suggest`` chain, an import of a missing file (ends ``failed``) and a job
canceled while queued, waits for all of them in the ledger, and prints what an operator
would look at. Last, it makes a dashboard key (kept in ``var/demo-api.env``, reused on the
next run) and prints, as commands that work pasted into the shell that ran it, where to
look next: the CLI, the dashboard, and how to run the same on PostgreSQL and Redis.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import time
import uuid
from pathlib import Path

from sqlalchemy import select

from app import db
from app.api.auth import digest_of, new_key
from app.config import LOCAL_DIR
from app.ledger import transitions as ledger
from app.ledger.rules.states import TERMINAL
from models.tables import events, jobs, steps
from tasks._settings import DATA_DIR

DEMO_DIR = DATA_DIR / "demo"
#: The dashboard's key for the demo: ``JOBLEDGER_API_KEYS`` as an env file for uvicorn.
API_ENV = LOCAL_DIR / "demo-api.env"
#: The key itself, to log in with (readable by its owner only).
API_KEY = LOCAL_DIR / "demo-api-key"
DASHBOARD_PORT = 8000
#: The variables that choose the ledger and the broker; unset: the embedded default.
BACKEND_VARIABLES = ("JOBLEDGER_DATABASE_URL", "JOBLEDGER_BROKER_URL")
FINISHED = frozenset(status.value for status in TERMINAL)


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
    ids = [uuid.UUID(job_id) for job_id in job_ids]
    while time.monotonic() < deadline:
        with db.engine().connect() as connection:
            statuses = connection.execute(select(jobs.c.status).where(jobs.c.id.in_(ids))).all()
        done = sum(1 for (status,) in statuses if status in FINISHED)
        print(f"  {done}/{len(job_ids)} jobs finished", flush=True)
        if done >= len(job_ids):
            return
        time.sleep(1)  # poll interval while the worker works
    raise SystemExit(
        "the demo jobs did not finish in time: is a worker running? "
        "(`celery -A app worker` — `bash .ci/demo` starts one)"
    )


def show(labelled: dict[str, str]) -> None:
    """The jobs' outcomes, then the chain's history."""
    with db.engine().connect() as connection:
        print(f"\n{'job':32} {'run name':18} {'status':10} {'progress':>8}  reason / result")
        for label, job_id in labelled.items():
            row = connection.execute(
                select(
                    jobs.c.name,
                    jobs.c.status,
                    jobs.c.progress,
                    jobs.c.failure_reason,
                    jobs.c.result,
                    jobs.c.result_url,
                ).where(jobs.c.id == uuid.UUID(job_id))
            ).one()
            detail = row.failure_reason or row.result_url or row.result
            print(
                f"{label:32} {row.name:18} {row.status:10} {row.progress:>7}%  {str(detail)[:70]}"
            )
        chain_id = uuid.UUID(labelled["sync_and_suggest"])
        chain = connection.execute(select(jobs.c.name).where(jobs.c.id == chain_id)).scalar_one()
        print(f"\nhistory of the chain (`jobledger show {chain}` prints the same and more):")
        history = connection.execute(
            select(
                events.c.created_at,
                steps.c.position,
                events.c.from_status,
                events.c.to_status,
                events.c.actor,
                events.c.message,
            )
            .outerjoin(steps, steps.c.id == events.c.step_id)
            .where(events.c.job_id == chain_id)
            .order_by(events.c.id)
        )
        for event in history:
            where = "job" if event.position is None else f"step {event.position}"
            print(
                f"  {event.created_at:%H:%M:%S}.{event.created_at.microsecond // 1000:03d} "
                f"{where:7} {event.from_status or '-':>9} -> {event.to_status:10} "
                f"{event.actor:7} {event.message}"
            )


def dashboard_key() -> str:
    """The demo's dashboard key: made once, its digest in :data:`API_ENV` for uvicorn."""
    if API_KEY.exists() and API_ENV.exists():
        key = API_KEY.read_text().strip()
        if digest_of(key) in API_ENV.read_text():
            return key
    key, entry = new_key("demo", "default")
    LOCAL_DIR.mkdir(parents=True, exist_ok=True)
    API_KEY.touch(mode=0o600)
    API_KEY.write_text(key + "\n")
    API_ENV.write_text(f"JOBLEDGER_API_KEYS='{json.dumps(entry)}'\n")  # names: no quotes
    return key


def closing_hints(chain_name: str, key: str) -> str:
    """Where to look next, as commands that work pasted into the shell that ran the demo
    (from any folder: they start with a ``cd``; the ledger variables the demo ran with are
    spelled out, since ``.ci/demo`` did not export them into that shell)."""
    here = shlex.quote(str(Path.cwd()))
    used = [
        f"{name}={shlex.quote(os.environ[name])}"
        for name in BACKEND_VARIABLES
        if os.environ.get(name)
    ]
    run = " ".join([f"cd {here} &&", *used])
    lines = [""]
    if used:
        lines.append(
            f"The ledger is {os.environ.get('JOBLEDGER_DATABASE_URL', 'the SQLite default')}."
        )
    else:
        lines.append(
            f"No server was used: the ledger is the SQLite file {LOCAL_DIR}/jobledger.sqlite3 and "
            f"the broker the folder {LOCAL_DIR}/broker (the defaults with no JOBLEDGER_* variable)."
        )
    lines += [
        "Look at it (worker log: var/demo-worker.log):",
        f"  {run} .venv/bin/jobledger jobs",
        f"  {run} .venv/bin/jobledger show {chain_name}",
        f"Open the dashboard: start the API, open the address and log in with the key {key}"
        f" (kept in {API_KEY}):",
        f"  {run} .venv/bin/uvicorn app.api.main:app --port {DASHBOARD_PORT} --env-file {API_ENV}",
        f"  http://127.0.0.1:{DASHBOARD_PORT}/dashboard/login",
    ]
    if not used:
        lines += [
            "The same on PostgreSQL and Redis (started if need be, database `jobledger`):",
            f"  {run} JOBLEDGER_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/jobledger "
            "JOBLEDGER_BROKER_URL=redis://127.0.0.1:6379/0 bash .ci/demo",
        ]
    return "\n".join(lines)


def main() -> None:
    sales, bank = write_inputs(DEMO_DIR)
    labelled = submit(sales, bank)
    print(f"queued {len(labelled)} jobs; waiting for the worker…")
    wait(list(labelled.values()))
    from tasks import export_data

    exported = export_data.delay("demo_sales", format="csv").id
    wait([exported])
    labelled["export"] = exported
    show(labelled)
    key = dashboard_key()
    with db.engine().connect() as connection:
        chain_name = connection.execute(
            select(jobs.c.name).where(jobs.c.id == uuid.UUID(labelled["sync_and_suggest"]))
        ).scalar_one()
    print(closing_hints(chain_name, key))


if __name__ == "__main__":
    main()

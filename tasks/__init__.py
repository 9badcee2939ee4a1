"""Typed job tasks, one module per job type.

``from tasks import …`` gives the task objects; importing this package also loads the
Celery application so producers get its broker settings.
"""

import app.celery  # noqa: F401  (configure the Celery app before the tasks bind to it)

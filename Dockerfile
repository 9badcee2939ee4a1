# One image for every jobledger process (migrate, worker, beat, flower).
FROM python:3.11-slim
WORKDIR /srv/jobledger
COPY pyproject.toml README.md ./
COPY app ./app
COPY tasks ./tasks
COPY models ./models
COPY migrations ./migrations
RUN pip install --no-cache-dir .
RUN useradd --create-home jobledger
USER jobledger

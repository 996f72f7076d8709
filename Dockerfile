# syntax=docker/dockerfile:1
# The Switchboard image: dependencies from requirements.lock, the code, a non-root user.
# Nothing is installed when a container starts: `docker compose up --scale worker=3` starts at once.
#   docker build -t switchboard .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /venv
# The lock first: code changes do not reinstall the dependencies (a cached layer). --no-deps: the lock
# is complete, and leaves out what the model's packages declare but we never load (Makefile).
COPY requirements.lock /tmp/requirements.lock
RUN /venv/bin/pip install --no-deps --requirement /tmp/requirements.lock
WORKDIR /app
COPY pyproject.toml README.md ./
COPY app ./app
COPY flows ./flows
COPY ui ./ui
COPY templates ./templates
COPY static ./static
# Editable, so the app finds templates/ and static/ beside its code; setuptools comes from the lock.
RUN /venv/bin/pip install --no-deps --no-build-isolation --editable . \
    && /venv/bin/python -m compileall -q /app/app /app/flows /app/ui

FROM ${PYTHON_IMAGE}
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    SWITCHBOARD_HOST=0.0.0.0 SWITCHBOARD_PORT=8000 SWITCHBOARD_DATA_DIR=/tmp/switchboard-data
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home --shell /usr/sbin/nologin switchboard
COPY --from=build /venv /venv
COPY --from=build /app /app
WORKDIR /app
USER 10001
EXPOSE 8000
ENTRYPOINT ["switchboard"]
CMD ["run"]

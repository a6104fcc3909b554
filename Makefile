# The commands a newcomer and CI both use.
VENV := .venv/bin

.PHONY: setup setup-tests demo test test-fast lint lock bench

## What the pipeline needs (ffmpeg, a virtualenv at the versions in requirements.lock).
setup:
	bash scripts/setup

## Plus what only the tests need (Chromium, PostgreSQL, the local Bluesky server, dev tools).
setup-tests:
	bash scripts/setup-tests

## Set everything up, then run the whole pipeline on the bundled sample recordings.
demo: setup
	test -f narratives.toml || $(VENV)/narrative init .
	$(VENV)/narrative process --workers 2 media/samples
	$(VENV)/narrative status

## The test suite (real models, real ffmpeg, real Chromium, a real local Bluesky server).
test: setup-tests
	$(VENV)/pytest -q

test-fast: setup-tests
	$(VENV)/pytest -q -m "not slow" --durations=5

lint: setup-tests
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/lint-imports

## Resolve the dependencies afresh and write requirements.lock.
lock:
	bash scripts/lock

bench:
	$(VENV)/python bench/transcribe.py
	$(VENV)/python bench/analyse.py
	$(VENV)/python bench/anonymise.py
	$(VENV)/python bench/render.py --batch 4
	$(VENV)/python bench/scheduler.py
	$(VENV)/python bench/cli_startup.py
	$(VENV)/python bench/pipeline.py --minutes 10 --workers 2
	$(VENV)/python bench/review.py

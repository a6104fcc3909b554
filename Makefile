# The commands a newcomer and CI both use.
VENV := .venv/bin

.PHONY: setup demo test test-fast lint bench

setup:
	bash scripts/setup

## Set everything up, then run the whole pipeline on the bundled sample recordings.
demo: setup
	test -f narratives.toml || $(VENV)/narrative init .
	$(VENV)/narrative process --workers 2 media/samples
	$(VENV)/narrative status

## The test suite (real models, real ffmpeg, real Chromium, a real local Bluesky server).
test:
	$(VENV)/pytest -q

test-fast:
	$(VENV)/pytest -q -m "not slow" --durations=5

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/lint-imports

bench:
	$(VENV)/python bench/transcribe.py
	$(VENV)/python bench/analyse.py
	$(VENV)/python bench/render.py --batch 4
	$(VENV)/python bench/scheduler.py

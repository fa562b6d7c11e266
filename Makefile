.PHONY: check lint types test bench screenshots

# everything CI-worthy in one go: lint, format, types, tests
check: lint types test

lint:
	ruff check .
	ruff format --check .

types:
	mypy

test:
	python -m pytest -q

bench:
	python -m bench

# refresh the README's dashboard screenshots (the browser test writes them to build/screenshots/)
screenshots:
	python -m pytest -q tests/web/test_dashboard.py -k enqueue_form_then_live_progress
	cp build/screenshots/dashboard-job.png build/screenshots/dashboard-overview.png docs/

.PHONY: check lint types test bench

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

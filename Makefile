# Shortcuts; the scripts work without make.
.PHONY: setup demo test bench pbx-start pbx-stop lint
setup:
	./scripts/setup.sh
demo:
	./scripts/demo.sh
test:
	./scripts/test.sh
bench: setup
	.venv/bin/python -m testpbx start
	.venv/bin/python -m bench
pbx-start:
	.venv/bin/python -m testpbx start
pbx-stop:
	.venv/bin/python -m testpbx stop
lint:
	.venv/bin/ruff check src tests testpbx bench && .venv/bin/mypy

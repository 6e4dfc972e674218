# Shortcuts; the scripts work without make.
.PHONY: setup demo test bench pbx-start pbx-stop lint deb
setup:
	./scripts/setup.sh
demo:
	./scripts/demo.sh
test:
	./scripts/test.sh
deb:
	./packaging/build-deb.sh dist
bench: setup
	.venv/bin/python -m testpbx start
	.venv/bin/python -m bench
pbx-start:
	.venv/bin/python -m testpbx start
pbx-stop:
	.venv/bin/python -m testpbx stop
lint:
	.venv/bin/ruff check src tests testpbx bench && .venv/bin/mypy

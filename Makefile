# Shortcuts; the scripts work without make.
.PHONY: setup demo test bench bench-http pbx-start pbx-stop lint deb
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
bench-http: setup  # the HTTP API alone: closed loop, connection per request and keep-alive, open loop
	.venv/bin/python -m testpbx start
	.venv/bin/python -m bench --only api,connections,openloop
pbx-start:
	.venv/bin/python -m testpbx start
pbx-stop:
	.venv/bin/python -m testpbx stop
lint:
	.venv/bin/ruff check src tests testpbx bench && .venv/bin/mypy

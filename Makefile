# One-command setup for a fresh Debian machine: `make demo` or `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PKGS := tshark openssh-server openssh-client tcpdump iproute2 rsync openssl ethtool iputils-ping curl git dropbear-bin nginx-light

.PHONY: demo test lint system venv clean bench kernels

system:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  echo "wireshark-common wireshark-common/install-setuid boolean false" | $(SUDO) debconf-set-selections; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Capture and flow kernels compiled ahead of time (numba pycc): `flowdet flows` starts without
# importing numba. Rebuilt when a kernel source changes; without it the same code runs JIT.
kernels: venv
	@$(BIN)/python -m flowdet.capture.aot --check >/dev/null 2>&1 || $(BIN)/python -m flowdet.capture.aot

# Scores the shipped sample captures with the shipped model; exit 1 means "alerts found",
# which is the point of the demo, so only 2 (an error) fails it.
demo: system venv kernels
	$(BIN)/flowdet score pcaps/ || [ $$? -eq 1 ]

lint: venv
	$(BIN)/ruff check flowdet tests benchmarks scripts
	$(BIN)/ruff format --check flowdet tests benchmarks scripts

test: system venv kernels lint
	$(BIN)/pytest -q

bench: system venv kernels
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

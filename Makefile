# The README's commands. Every target sets up .venv first (created when missing, reinstalled when
# pyproject.toml is newer than the last install), so a fresh clone needs nothing else.
# Python 3.11 (pyproject's requires-python): python3.11 when on PATH, else python3 (checked below)
PYTHON ?= $(shell command -v python3.11 2>/dev/null || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export KEDRO_DISABLE_TELEMETRY := true
export MPLBACKEND := Agg

OPTUNA_DB := data/06_models/optuna_base_models.db

.PHONY: setup run test postgres-binaries lint viz viz-build ui dashboard serve bench clean tune-workers mlflow-server

setup: $(STAMP)

IS_PY311 := -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'

# A venv of another Python, or one left without pip (a failed first setup, a missing python3-venv
# package), is rebuilt rather than reused.
$(STAMP): pyproject.toml
	@{ $(BIN)/python $(IS_PY311) && $(BIN)/python -m pip --version; } >/dev/null 2>&1 || { \
	  $(PYTHON) $(IS_PY311) 2>/dev/null || { echo "BMA Quant needs Python 3.11 and '$(PYTHON)' is" \
	    "$$(command -v $(PYTHON) >/dev/null && $(PYTHON) --version 2>&1 || echo not found): run 'make $(MAKECMDGOALS)" \
	    "PYTHON=/path/to/python3.11'"; exit 1; }; \
	  rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/kedro run
	@$(BIN)/python -m bma_quant.summary

# Two pytest-xdist workers, a test module per worker (tests/conftest.py); TEST_WORKERS=0 runs the
# suite in one process.
TEST_WORKERS ?= 2

# The scale-out tests start their own PostgreSQL server from the Debian package's binaries:
# installed here when missing and possible (root with apt-get, as on CI); elsewhere those tests
# fail naming the install command.
postgres-binaries:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	       && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } \
	  || echo "PostgreSQL server binaries not found and not installable here: the scale-out tests" \
	          "will fail (Debian / Ubuntu: sudo apt-get install postgresql; macOS: brew install postgresql@15)"

test: $(STAMP) postgres-binaries
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# kedro-viz imports a response class FastAPI has deprecated: a notice no user can act on
VIZ_ENV := PYTHONWARNINGS="ignore:ORJSONResponse is deprecated"

viz: $(STAMP)
	$(VIZ_ENV) $(BIN)/kedro viz run --no-browser

viz-build: $(STAMP)
	$(VIZ_ENV) $(BIN)/kedro viz build --include-previews

# macOS 12+ gives port 5000 to AirPlay Receiver: make ui UI_PORT=5050
UI_PORT ?= 5000
ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --default-artifact-root ./mlruns --host 127.0.0.1 --port $(UI_PORT)

# optuna-dashboard is not a project dependency (a web UI only some users want): install it once.
dashboard: $(STAMP)
	@test -x $(BIN)/optuna-dashboard || { echo "optuna-dashboard is not installed: $(BIN)/pip install optuna-dashboard"; exit 1; }
	@test -f $(OPTUNA_DB) || { echo "no Optuna studies yet ($(OPTUNA_DB)): run 'make run' first"; exit 1; }
	$(BIN)/optuna-dashboard sqlite:///$(OPTUNA_DB) --host 127.0.0.1 --port 8080

# The model the last `kedro run` registered (or MODEL_URI=models:/<name>@champion), served by the
# venv's mlflow with the venv's uvicorn on PATH, in this environment (no conda / virtualenv build).
# A run that registered nothing (gates on another model, registry off) serves its data set's
# champion when there is one; otherwise bma_quant.serving.serve_uri says why and what to pass.
REGISTRATION := data/08_reporting/model_registration.json
MODEL_URI ?=
SERVE_PORT ?= 5001
# seconds one scoring request may take (MLflow's default, 60, is short for a wide panel's history)
SERVE_TIMEOUT ?= 300
TRACKING := MLFLOW_TRACKING_URI="$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}"
serve: $(STAMP)
	@uri="$(MODEL_URI)"; \
	if [ -z "$$uri" ]; then uri=$$($(TRACKING) $(BIN)/python -m bma_quant.serving.serve_uri $(REGISTRATION)) || exit 1; fi; \
	echo "serving $$uri on http://127.0.0.1:$(SERVE_PORT)"; \
	PATH="$(abspath $(BIN)):$$PATH" $(TRACKING) \
	MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT=$(SERVE_TIMEOUT) \
	$(BIN)/mlflow models serve -m "$$uri" --env-manager local --host 127.0.0.1 --port $(SERVE_PORT)

# Scale-out (README): N extra Optuna workers on the shared study named by
# base_models.tuning.study_name in base_models.tuning.storage (set both in conf/local or PARAMS).
N ?= 2
tune-workers: $(STAMP)
	$(BIN)/python -m bma_quant.tune_worker --workers $(N) $(if $(LEARNERS),--learners $(LEARNERS)) $(if $(ENV),--env $(ENV)) $(if $(PARAMS),--params "$(PARAMS)")

# MLflow tracking server with a PostgreSQL backend store, e.g.
#   make mlflow-server MLFLOW_BACKEND=postgresql://mlflow@db-host/mlflow
MLFLOW_BACKEND ?= postgresql://postgres@127.0.0.1:5432/mlflow
mlflow-server: $(STAMP)
	$(BIN)/mlflow server --backend-store-uri $(MLFLOW_BACKEND) --artifacts-destination ./mlartifacts --host 127.0.0.1 --port $(UI_PORT)

bench: $(STAMP)
	$(BIN)/python benchmarks/run_benchmarks.py

clean:
	rm -rf data/0[2-8]_*/[!.]* mlruns mlflow.db

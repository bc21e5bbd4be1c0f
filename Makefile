# The README's commands. Every target sets up .venv first (created when missing, reinstalled when
# pyproject.toml is newer than the last install), so a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export KEDRO_DISABLE_TELEMETRY := true
export MPLBACKEND := Agg

.PHONY: setup run test lint viz viz-build ui bench clean tune-workers mlflow-server

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/kedro run
	@$(BIN)/python -m bma_quant.summary

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

viz: $(STAMP)
	$(BIN)/kedro viz run --no-browser

viz-build: $(STAMP)
	$(BIN)/kedro viz build

ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --default-artifact-root ./mlruns --host 127.0.0.1 --port 5000

# Scale-out (README): N extra Optuna workers on the shared study named by
# base_models.tuning.study_name in base_models.tuning.storage (set both in conf/local or PARAMS).
N ?= 2
tune-workers: $(STAMP)
	$(BIN)/python -m bma_quant.tune_worker --workers $(N) $(if $(LEARNERS),--learners $(LEARNERS)) $(if $(ENV),--env $(ENV)) $(if $(PARAMS),--params "$(PARAMS)")

# MLflow tracking server with a PostgreSQL backend store, e.g.
#   make mlflow-server MLFLOW_BACKEND=postgresql://mlflow@db-host/mlflow
MLFLOW_BACKEND ?= postgresql://postgres@127.0.0.1:5432/mlflow
mlflow-server: $(STAMP)
	$(BIN)/mlflow server --backend-store-uri $(MLFLOW_BACKEND) --artifacts-destination ./mlartifacts --host 127.0.0.1 --port 5000

bench: $(STAMP)
	$(BIN)/python benchmarks/run_benchmarks.py

clean:
	rm -rf data/0[2-8]_*/[!.]* mlruns mlflow.db

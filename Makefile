# sama — every job is a target; `make help` lists them.
# `make test` and `make demo` install what they need into .venv on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SAMA   := $(BIN)/sama
# The CPU build of torch; on a GPU machine install your CUDA build of torch first
# (see README, "GPU install"), then `make install TORCH_SPEC=torch`.
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.installed
OUT    ?= out
# Python caches compiled modules in .venv: a shell that sets PYTHONDONTWRITEBYTECODE (as this machine's does)
# otherwise recompiles transformers and torch from source in every `sama` call (6 of the 17 CPU seconds
# of a small `sama encode`), and the demo and the tests make dozens of them
unexport PYTHONDONTWRITEBYTECODE
# two pytest workers (pytest-xdist): the suite is half subprocess start-up and import time, which a
# second worker overlaps (measured on 2 cores: 9 min 18 s instead of ~15); PYTEST_ARGS= runs it serially
PYTEST_ARGS ?= -n 2

.PHONY: help install test test-fast lint format bench demo clean demo-data demo-perturb demo-encode demo-anchor \
        demo-stage0 demo-stage1 demo-edit demo-bench ablation toy-model toy-figures long-videos caches toy-lora

help:  ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 20

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install sama with its dev extras

test: $(STAMP)  ## run the test suite (CPU, two workers, ~10 min on 2 cores)
	@# the gallery tests play pages in headless Chromium: installed here when root on Debian, else they skip
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! { command -v chromium && command -v chromedriver; } >/dev/null; then \
	  echo "installing chromium and chromium-driver (apt-get) for the gallery tests"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
	  || echo "could not install chromium: the gallery browser tests will skip"; fi
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff check
	$(BIN)/ruff check sama_cli tests

format: $(STAMP)  ## ruff format + import sort
	$(BIN)/ruff check --fix --select I sama_cli tests
	$(BIN)/ruff format sama_cli tests

bench: $(STAMP)  ## speed and memory benchmarks, written to $(OUT)/bench/bench.md
	$(BIN)/python -m sama_cli.perf -o $(OUT)/bench

# ---- the demo: the whole pipeline on the toy world (docs/sama.md §8), every step a target of its own ---------------
# synth -> perturb --mix (stage-0 pretexts on the text-to-video clips) -> encode -> anchor -> train stage 0
# -> train stage 1 -> edit the held-out clips -> bench toy. Outputs under $(DEMO)/.
DEMO       ?= $(OUT)/demo
DEMO_SEED  ?= 0
# grid 4: objects on the 4x4-px cells of the codec's tokens (issue 19); a test split of 30% (~115 clips, ~16 a kind)
# and 15% unseen combinations (~70 clips): editing them is a third of the demo's time after training
DEMO_SYNTH ?= --clips 480 --images 960 --t2v 160 --frames 5 --size 32 --grid 4 --test-frac 0.3 --heldout-frac 0.15 \
              --kind-weights recolour=2,replace=2,remove=2,add=2
# --lossless: the oracle scores the edited frames themselves (lossy H.264 is not bit-reproducible)
# --clip-batch 8: eight clips of the toy world's one shape denoised together (the same edits within rounding)
EDIT_ARGS  ?= --kind video_edit --steps 20 --guidance 1 --shift 5 --side-by-side --lossless --clip-batch 8
DEMO_EDIT  ?= --split test,heldout $(EDIT_ARGS)
# stage 0 alone cannot edit (it saw no video edits): its row on the held-out clips is enough
DEMO_EDIT0 ?= --split test $(EDIT_ARGS)
# 5-frame clips: the release's speed pretext trims 2x (5 -> 2 frames) down to 1 frame; padding keeps motion
DEMO_MIX   ?= --fit pad
S0_ARGS    ?=
S1_ARGS    ?=
S0_RECIPE  ?= recipes/toy_stage0.yaml
S1_RECIPE  ?= recipes/toy_stage1.yaml

$(DEMO)/toy/manifest.jsonl: | $(STAMP)
	$(SAMA) synth $(DEMO)/toy $(DEMO_SYNTH) --seed $(DEMO_SEED)
$(DEMO)/mix/manifest.jsonl: $(DEMO)/toy/manifest.jsonl
	$(SAMA) perturb --mix $< -o $(DEMO)/mix --seed $(DEMO_SEED) $(DEMO_MIX)
$(DEMO)/lat/manifest.jsonl: $(DEMO)/mix/manifest.jsonl
	$(SAMA) encode $< -o $(DEMO)/lat --vae pixel:s4 --text-encoder tiny
$(DEMO)/anc/manifest.jsonl: $(DEMO)/lat/manifest.jsonl
	$(SAMA) anchor $< -o $(DEMO)/anc --grid 2
$(DEMO)/stage0/export/ema/config.json: $(DEMO)/anc/manifest.jsonl $(S0_RECIPE)
	$(SAMA) train $(S0_RECIPE) data.manifests=[$<] train.out_dir=$(DEMO)/stage0 $(S0_ARGS)
$(DEMO)/stage1/export/ema/config.json: $(DEMO)/stage0/export/ema/config.json $(S1_RECIPE)
	$(SAMA) train $(S1_RECIPE) data.manifests=[$(DEMO)/anc/manifest.jsonl] \
	    model.init=$(DEMO)/stage0/export/ema train.out_dir=$(DEMO)/stage1 $(S1_ARGS)

demo-data: $(DEMO)/toy/manifest.jsonl  ## demo step: synthesize the toy world
demo-perturb: $(DEMO)/mix/manifest.jsonl  ## demo step: stage-0 pretexts on the text-to-video clips
demo-encode: $(DEMO)/lat/manifest.jsonl  ## demo step: cache latents (pixel codec) and text embeddings
demo-anchor: $(DEMO)/anc/manifest.jsonl  ## demo step: semantic anchors of the targets
demo-stage0: $(DEMO)/stage0/export/ema/config.json  ## demo step: stage 0 (image edits + pretexts)
demo-stage1: $(DEMO)/stage1/export/ema/config.json  ## demo step: stage 1 (image + video edits)
demo-edit: demo-stage1  ## demo step: edit the held-out clips with stage 1 (splits test, heldout) and stage 0 only (test)
	$(SAMA) edit --manifest $(DEMO)/toy/manifest.jsonl --model $(DEMO)/stage1/export/ema -o $(DEMO)/edits $(DEMO_EDIT)
	$(SAMA) edit --manifest $(DEMO)/toy/manifest.jsonl --model $(DEMO)/stage0/export/ema -o $(DEMO)/edits_stage0 \
	    $(DEMO_EDIT0)
BENCH_SPLITS ?= --split test,heldout
demo-bench: demo-edit  ## demo step: score the held-out edits with the exact toy oracle
	$(SAMA) bench run toy --data $(DEMO)/toy $(BENCH_SPLITS) --edits $(DEMO)/edits -o $(DEMO)/report
	$(SAMA) bench run toy --data $(DEMO)/toy --split test --edits $(DEMO)/edits_stage0 -o $(DEMO)/report_stage0
	$(SAMA) bench run toy --data $(DEMO)/toy $(BENCH_SPLITS) --baseline source -o $(DEMO)/report_source

demo: demo-bench  ## the whole pipeline on the toy world, ~14 min on 2 CPU cores; ends with a report
	$(BIN)/python -m sama_cli.toy.demo $(DEMO)

# ---- the ablation (docs/sama.md §8): baseline / +SA / +MA / +SA+MA over seeds at equal steps -> docs/ablation.md -----
ABLATION_ARGS ?= --seeds 0 1 2 --stage0-steps 250 --stage1-steps 1700  # the demo's steps: its model edits objects
$(DEMO)/anc_plain/manifest.jsonl: $(DEMO)/toy/manifest.jsonl
	$(SAMA) encode $< -o $(DEMO)/lat_plain --vae pixel:s4 --text-encoder tiny
	$(SAMA) anchor $(DEMO)/lat_plain/manifest.jsonl -o $(DEMO)/anc_plain --grid 2

ablation: $(DEMO)/anc/manifest.jsonl $(DEMO)/anc_plain/manifest.jsonl  ## the paper's claims at toy scale (~1.5-2.5 h by machine: 12 trainings of the demo's length)
	$(BIN)/python -m sama_cli.toy.ablation --demo $(DEMO) --out $(OUT)/ablation $(ABLATION_ARGS)

# ---- whole videos (issue 16): toy clips several windows long, boundary vs interior frames -> docs/long_videos.md ----
LONG_ARGS ?= --seeds 1 2 3 --clips 12 --frames 29
long-videos: $(STAMP)  ## long toy clips edited whole in windows, scored frame by frame (~6 min on 2 cores) -> docs/long_videos.md
	$(BIN)/python -m sama_cli.toy.long_clips --out $(OUT)/long_videos --doc docs/long_videos.md $(LONG_ARGS)

# ---- step caches (issue 17): skipped block evaluations vs toy-oracle accuracy, per cache and setting -> docs/caches.md ----
CACHES_ARGS ?= --seeds 1 2 3 --clips 24
caches: $(STAMP)  ## sama edit --cache settings on fresh toy clips with the embedded model (~5 min) -> docs/caches.md
	$(BIN)/python -m sama_cli.toy.caches --out $(OUT)/caches --doc docs/caches.md $(CACHES_ARGS)

# ---- LoRA (issue 18): a LoRA teaches the embedded model an edit it never saw (purple), 3 seeds -> docs/lora.md ----
TOYLORA_ARGS ?= --seeds 1 2 3
toy-lora: $(STAMP)  ## a LoRA teaches the embedded toy model a new edit kind (3 seeds, ~30 min) -> docs/lora.md
	$(BIN)/python -m sama_cli.toy.lora_study --out $(OUT)/toy_lora --doc docs/lora.md $(TOYLORA_ARGS)

# ---- the embedded default model: the same pipeline as the demo, with more data and its own, longer recipes ---------
# from scratch into $(TOYM)/, then stored in fp16 with its model card (per-kind scores) and the docs' stills
TOYM       ?= $(OUT)/toy_model
TOYM_SYNTH ?= --clips 2500 --images 6000 --t2v 500 --frames 5 --size 32 --grid 4 --kind-weights recolour=2,replace=3,remove=2,add=3
toy-model: $(STAMP)  ## train the embedded default model from scratch (~100 min on 2 CPU cores) into sama_cli/assets/toy_model
	$(MAKE) demo-bench DEMO=$(TOYM) DEMO_SYNTH="$(TOYM_SYNTH)" S0_RECIPE=recipes/toy_model_stage0.yaml \
	    S1_RECIPE=recipes/toy_model_stage1.yaml
	$(BIN)/python -m sama_cli.toy.embedded $(TOYM) sama_cli/assets/toy_model
	$(MAKE) toy-figures DEMO=$(TOYM)

toy-figures: $(STAMP)  ## side-by-side stills (source | edit | truth) of held-out edits -> docs/toy_edits_*.png
	$(BIN)/python -m sama_cli.toy.figure $(DEMO)/toy $(DEMO)/edits docs/toy_edits_test.png --split test --per-kind 2
	$(BIN)/python -m sama_cli.toy.figure $(DEMO)/toy $(DEMO)/edits docs/toy_edits_heldout.png --split heldout

clean:  ## remove outputs (keeps .venv)
	rm -rf $(OUT) .pytest_cache

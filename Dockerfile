# syntax=docker/dockerfile:1.6
#
# `ffkit serve` in a container, in two stages:
#   builder  installs ffkit with the `export` extra (torch) and runs `ffkit build` on your
#            checkpoints, mounted for that one step only (never copied into a layer);
#   runtime  installs ffkit with the `serve` extra only (onnxruntime, OpenCV, PyAV, FastAPI,
#            uvicorn: no torch), copies the built models and runs `ffkit serve` on 0.0.0.0:8000.
#
# Build (BuildKit): name the checkpoint folder as the `checkpoints` build context and say what
# to build from it, RECIPE=FILE (file relative to that folder), space-separated:
#
#   docker build -t ffkit-serve \
#     --build-context checkpoints=/path/to/checkpoints \
#     --build-arg BUILDS="retinaface_resnet50=Resnet50_Final.pth arcface_iresnet50=backbone.pth inswapper_128=reswapper-429500.pth" \
#     --build-arg EMAP=inswapper_128.onnx \
#     .
#
#   EMAP         needed with inswapper_128: the emap, as .npy or an inswapper ONNX holding one (same folder)
#   INT8         1 (default): every recipe also gets its INT8 variant, verified against its budget; 0: FP32 only
#   CALIB        the INT8 calibration images, a folder in the checkpoints context (default: the photo
#                the package ships, validation/assets; give your own faces for real models)
#   BUILD_FLAGS  more `ffkit build` options for every recipe, e.g. "--fp16"
#   TORCH        the torch requirement of the builder (default torch==2.13.0)
#   TORCH_INDEX  a package index to take torch from (e.g. a CPU-only wheel index; default: pip's)
#
# Without a Docker daemon, or where python:3.11-slim cannot be pulled: docker/build-local.sh
# (podman, and a local Python base made from Debian's packages; see the README's Serve section).
#
# Run (options after the image name go to `ffkit serve`; it listens on 0.0.0.0, so it needs a
# token, FFKIT_TOKEN or --token; SIGTERM from `docker stop` stops it gracefully, exit 0):
#
#   docker run --rm -p 8000:8000 -e FFKIT_TOKEN="$(openssl rand -hex 16)" ffkit-serve --max-concurrency 2
#   docker run --rm -p 8000:8000 -e FFKIT_TOKEN=... ffkit-serve --variant int8             # the INT8 models
#   docker run --rm -p 8000:8000 -e FFKIT_TOKEN=... -v "$PWD/ffkit-demo/models:/models:ro" ffkit-serve   # other models

ARG PYTHON_IMAGE=python:3.11-slim

# Replaced by `--build-context checkpoints=DIR`; empty otherwise (the builder then says what is missing).
FROM scratch AS checkpoints

FROM ${PYTHON_IMAGE} AS builder
ARG TORCH="torch==2.13.0"
ARG TORCH_INDEX=""
# torch, then the other dependencies read from pyproject.toml, each in a layer of its own, so a
# change to ffkit's sources re-runs neither
RUN pip install --no-cache-dir ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "$TORCH"
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['export']))" > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt
COPY setup.py README.md ./
COPY recipes recipes
COPY runtime runtime
COPY validation validation
COPY toolkit toolkit
RUN pip install --no-cache-dir --no-deps .
ARG BUILDS=""
ARG EMAP=""
ARG INT8=1
ARG CALIB=""
ARG BUILD_FLAGS=""
# A digest of the checkpoint folder's files, given by docker/build-local.sh: builders that do not
# key their cache on a bind mount's contents (podman) then rebuild when the checkpoints change.
ARG CHECKPOINTS_DIGEST=""
RUN --mount=type=bind,from=checkpoints,target=/checkpoints \
    set -eu; \
    if [ -z "$BUILDS" ]; then \
      echo "error: give --build-context checkpoints=DIR and --build-arg BUILDS='RECIPE=FILE ...'" >&2; exit 2; \
    fi; \
    quant=""; \
    if [ "$INT8" = 1 ]; then \
      calib=/src/validation/assets; [ -z "$CALIB" ] || calib="/checkpoints/$CALIB"; \
      quant="--int8 --calib $calib"; \
    fi; \
    for item in $BUILDS; do \
      recipe="${item%%=*}"; file="${item#*=}"; extra=""; \
      if [ "$recipe" = inswapper_128 ]; then \
        if [ -z "$EMAP" ]; then echo "error: inswapper_128 needs --build-arg EMAP=FILE" >&2; exit 2; fi; \
        extra="--emap /checkpoints/$EMAP"; \
      fi; \
      ffkit build "$recipe" "/checkpoints/$file" -o /models $extra $quant $BUILD_FLAGS; \
    done; \
    rm -rf /models/.ffkit-calib

FROM ${PYTHON_IMAGE} AS runtime
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['serve']))" > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt && rm /tmp/requirements.txt
COPY setup.py README.md ./
COPY recipes recipes
COPY runtime runtime
COPY validation validation
COPY toolkit toolkit
RUN pip install --no-cache-dir --no-deps . && cd / && rm -rf /src \
 && useradd --system --uid 10001 --create-home ffkit
COPY --from=builder /models /models
WORKDIR /tmp
USER ffkit
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"
# 0.0.0.0 needs a token: docker run -e FFKIT_TOKEN=... (or --token T, or --insecure-no-token)
ENTRYPOINT ["ffkit", "serve", "--models", "/models", "--host", "0.0.0.0", "--port", "8000"]

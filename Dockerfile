# The image every node of a deblur cluster runs (cluster.yaml, jobs/k8s/): Ray's own CUDA image at the pinned
# Ray version, with torch built for that same CUDA, this package (and its shipped model) and its storage
# extras, every version from constraints.txt (the set CI tests).
#   make image IMAGE=<registry>/deblur:<tag>     then: docker push <registry>/deblur:<tag>
# CUDA: the base image's tag and torch's wheel index name the same CUDA (tested); without that, pip would take
# PyPI's newest torch, built for another CUDA than the image's libraries and driver stack.
ARG RAY_VERSION=2.60.0
ARG CUDA=cu128
FROM rayproject/ray:${RAY_VERSION}-py311-${CUDA}
ARG CUDA

WORKDIR /home/ray/deblur
COPY --chown=ray:users constraints.txt pyproject.toml README.md ./
# torch first, from PyTorch's index for the base image's CUDA, at the version constraints.txt locks
# hadolint ignore=DL3013
RUN TORCH="$(grep -o '^torch==[^ ;]*' constraints.txt)" \
    && pip install --no-cache-dir --index-url "https://download.pytorch.org/whl/${CUDA}" "${TORCH}"
COPY --chown=ray:users src ./src
COPY --chown=ray:users jobs ./jobs
# this package, every dependency at the version constraints.txt locks
# hadolint ignore=DL3013
RUN pip install --no-cache-dir -c constraints.txt ".[s3,gcs,openvino]" \
    && python -c "import deblur, torch; deblur.load(); assert torch.version.cuda, torch.__version__"

ENV DEBLUR_HOME=/home/ray/deblur

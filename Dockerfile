# The image every node of a deblur cluster runs (cluster.yaml, jobs/k8s/*.yaml): Ray's own GPU image at the
# pinned Ray version, with this package (and its shipped model) and its storage extras installed.
#   make image IMAGE=<registry>/deblur:<tag>     then: docker push <registry>/deblur:<tag>
# rayproject/ray images already carry Python 3.11, CUDA and a torch-compatible driver stack; torch comes
# from the package's dependencies.
ARG RAY_VERSION=2.60.0
FROM rayproject/ray:${RAY_VERSION}-py311-gpu

WORKDIR /home/ray/deblur
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users deblur ./deblur
COPY --chown=ray:users jobs ./jobs
# this package itself, from the copied source (its dependencies are pinned in pyproject.toml)
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[s3,gcs]" \
    && python -c "import deblur; deblur.load()"

ENV DEBLUR_HOME=/home/ray/deblur

# The README's two commands are `make demo` and `make test`; everything else is their parts.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV = $(BIN)/uv pip install --python $(BIN)/python --compile-bytecode
DATA ?= ../shared/data
IMAGE ?= deblur:0.1.0
# empty: PyPI's torch (on Linux x86_64 a CUDA build, ~5.6 GB with its libraries); `make demo TORCH=cpu`: the CPU
# build from PyTorch's index (a 2.2 GB .venv instead of 6.6 GB), at the version constraints.txt locks
TORCH ?=
TORCH_INDEX := https://download.pytorch.org/whl/$(TORCH)
# the Fashion-MNIST sprite, in the clone (MIT, Zalando Research; its licence beside it)
SPRITE ?= datasets/fashion-mnist-sprite/fashion-mnist-sprite.png
# the moderate blurs of the photo targets, one evaluation each
PHOTO_DEGRADATIONS := gaussian:sigma=1..2.5 motion:length=9 defocus:radius=2.5
NOISE := +noise:sigma=0.005
# the default model's training family: realistic blur (camera shake, spatially varying camera motion, the
# blind kernels), sensor noise and JPEG; the realistic evaluation set's degradations (one evaluation each)
REALISTIC := real+noise:sigma=0..0.02,p=0.7+jpeg:quality=60..95,p=0.3
REAL_EVAL := shake:length=15..45+poisson:a=0.002,sigma=0.003 warp:shift=4..10,rotation=0.3..1+poisson:a=0.002,sigma=0.003

.PHONY: demo test install lock image push bench article article-fashion-mnist sprite-unet default-model eval-sprite eval-photos eval-real figures clean

demo: $(VENV)/.installed  ## install, then blur/de-blur the bundled photos and write a before/after picture
	$(BIN)/deblur demo --output demo-output

# two pytest workers (pytest-xdist), each with its own Ray cluster and S3 server: the suite waits on Ray's
# start-ups and polls, and one worker left a quarter of 2 cores idle (tests that share a module's head or
# wheel stay on one worker: --dist loadgroup). TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2

test: $(VENV)/.installed  ## install, then run the test suite (real Ray, real S3 protocol server)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

install: $(VENV)/.installed

# uv installs the same locked set as pip would, from the same index, ~4x faster (20 s against 75 here);
# --compile-bytecode as pip does: where PYTHONDONTWRITEBYTECODE is set (CI here), nothing is compiled later,
# and every process (each Ray worker) would compile torch and Ray again (measured: the suite ran 20+ minutes)
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -c constraints.txt uv
	$(if $(TORCH),$(UV) -c constraints.txt --index-url $(TORCH_INDEX) torch torchvision)
	$(UV) -c constraints.txt -e '.[test,s3]'
	touch $@

lock: $(VENV)/.installed  ## rewrite constraints.txt from the installed set (after changing dependencies)
	{ sed -n '1,3p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v '^deblur' \
		| sed 's/$$/ ; python_version == "3.11"/'; } > constraints.txt.new && mv constraints.txt.new constraints.txt

article: $(VENV)/.installed  ## the article's recipe on the sprite's 600 training tiles, then de-blur tiles 600-899
	$(BIN)/deblur sprite --sprite $(SPRITE) --output data/sprite
	$(BIN)/deblur train --data data/sprite/train --output outputs/article --model seed --degradation seed \
		--loss mse --lr 1e-3 --batch-size 2000 --epochs 300 --patch-size 28 --workers 2 --checkpoint-every 25 --precision fp32
	$(BIN)/deblur eval --model outputs/article --data data/sprite/eval --degradation seed --output outputs/article-eval

article-fashion-mnist: $(VENV)/.installed  ## the article exactly: Fashion-MNIST (downloaded), 100 epochs of batch 2000
	$(BIN)/deblur train --data fashion-mnist --output outputs/article-fmnist --model seed --degradation seed \
		--loss mse --lr 1e-3 --batch-size 2000 --epochs 100 --patch-size 28 --workers 2 --checkpoint-every 10 --precision fp32
	$(BIN)/deblur sprite --sprite $(SPRITE) --output data/sprite
	$(BIN)/deblur eval --model outputs/article-fmnist --data data/sprite/eval --degradation seed --output outputs/article-fmnist-eval

sprite-unet: $(VENV)/.installed  ## the default architecture on the sprite's training tiles (checkpoints/README.md)
	$(BIN)/deblur sprite --sprite $(SPRITE) --output data/sprite
	$(BIN)/deblur train --data data/sprite/train --output outputs/sprite-unet --model unet --channels 1 \
		--degradation seed --patch-size 28 --batch-size 128 --loss psnr --schedule cosine --flips --clip 1 --lr 1e-3 \
		--minutes 6.5 --val-every 1000 --loader-workers 3 --gpu
	$(BIN)/deblur train --data data/sprite/train --output outputs/sprite-unet-ft --init outputs/sprite-unet \
		--degradation seed --patch-size 28 --batch-size 64 --loss psnr --schedule cosine --flips --mixup 0.5 --clip 1 \
		--lr 2e-4 --minutes 25 --val-every 500 --loader-workers 1

data/photos-train: $(VENV)/.installed  ## Kodak (but the three demo photos) and the Unsplash photos downscaled 3x
	mkdir -p $@ && cp $(DATA)/kodak24/*.png $@/ && rm -f $@/kodim03.png $@/kodim19.png $@/kodim23.png
	$(BIN)/deblur degrade --input $(DATA)/unsplash13 --output $@/unsplash --degradation none --downscale 3

default-model: data/photos-train  ## train the default model on one GPU (the demo photos validate), then ship it
	$(BIN)/deblur train --data data/photos-train --val-data src/deblur/assets/samples/photos --output outputs/default-model \
		--init src/deblur/assets/default --degradation "$(REALISTIC)" --loss psnr --schedule cosine --flips --clip 1 \
		--lr 3e-4 --batch-size 128 --patch-size 128 --minutes $(or $(MINUTES),10) --val-every 500 --loader-workers 14 --gpu
	$(BIN)/python -c "from deblur.core import checkpoint; checkpoint.export('outputs/default-model', 'src/deblur/assets/default')"

image:  ## the cluster image (Dockerfile): make image IMAGE=<registry>/deblur:<tag>, then docker push it
	docker build -t $(IMAGE) .

push: image
	docker push $(IMAGE)

bench: $(VENV)/.installed  ## pipeline throughput and training-step speed on this machine (figures printed)
	$(BIN)/python bench/throughput.py --images 16
	$(BIN)/python bench/train_step.py --batch 8 --seconds 2

eval-sprite: $(VENV)/.installed  ## both sprite models on evaluation tiles 600-899, the article's 3x3 blur
	$(BIN)/deblur sprite --sprite $(SPRITE) --output data/sprite
	$(BIN)/deblur eval --model checkpoints/article-seed --data data/sprite/eval --degradation seed --output outputs/eval/sprite-seed
	$(BIN)/deblur eval --model checkpoints/sprite-unet --data data/sprite/eval --degradation seed --output outputs/eval/sprite-unet
	$(BIN)/deblur eval --model checkpoints/sprite-unet --data data/sprite/eval --degradation seed --self-ensemble \
		--output outputs/eval/sprite-unet-x8

eval-real: $(VENV)/.installed  ## the shipped model on the realistic evaluation set (evaluation photos, shake/warp)
	$(BIN)/python scripts/sample_photos.py data/eval-photos
	for b in $(REAL_EVAL); do $(BIN)/deblur eval --data data/eval-photos --degradation "$$b" \
		--output outputs/eval/real-$${b%%:*} || exit 1; done

eval-photos: $(VENV)/.installed  ## the shipped model on scikit-image's sample photos (evaluation only), each blur
	$(BIN)/python scripts/sample_photos.py data/eval-photos
	for b in $(PHOTO_DEGRADATIONS); do $(BIN)/deblur eval --data data/eval-photos --degradation "$$b$(NOISE)" \
		--output outputs/eval/photos-$${b%%:*} || exit 1; done

figures: eval-sprite eval-photos  ## copy the evaluation reports into docs/ for the README
	mkdir -p docs
	$(BIN)/python scripts/blur_figure.py docs/blurs.jpg
	cp outputs/eval/sprite-seed/report.png docs/sprite-seed.png
	cp outputs/eval/sprite-unet/report.png docs/sprite-unet.png
	for b in gaussian motion defocus; do $(BIN)/python -c "import cv2, sys; \
		cv2.imwrite(sys.argv[2], cv2.imread(sys.argv[1]), [cv2.IMWRITE_JPEG_QUALITY, 85])" \
		outputs/eval/photos-$$b/report.png docs/photos-$$b.jpg || exit 1; done

clean:
	rm -rf $(VENV) demo-output outputs data

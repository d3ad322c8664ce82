# The README's two commands are `make demo` and `make test`; everything else is their parts.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SPRITE ?= ../shared/data/fashion-mnist-sprite/fashion-mnist-sprite.png

.PHONY: demo test install bench article clean

demo: $(VENV)/.installed  ## install, then blur/de-blur the bundled photos and write a before/after picture
	$(BIN)/deblur demo --output demo-output

test: $(VENV)/.installed  ## install, then run the test suite (real Ray, real S3 protocol server)
	$(BIN)/python -m pytest -q

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[test,s3]'
	touch $@

article: $(VENV)/.installed  ## the article's recipe on the sprite's 600 training tiles, then de-blur tiles 600-899
	$(BIN)/deblur sprite --sprite $(SPRITE) --output data/sprite
	$(BIN)/deblur train --data data/sprite/train --output outputs/article --model seed --blur seed \
		--loss mse --lr 1e-3 --batch-size 2000 --epochs 300 --patch-size 28 --workers 2 --checkpoint-every 25
	$(BIN)/deblur run --model outputs/article --input data/sprite/eval-blurred --output outputs/article-eval

clean:
	rm -rf $(VENV) demo-output outputs data

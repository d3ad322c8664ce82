"""The Ray-free core: models, blurs and degradations, images and storage, restoring one image, training
steps, metrics, Wiener deconvolution, evaluation. Nothing under here imports Ray (a test checks), so it runs
where Ray is not installed: a notebook, a user's own pipeline, a lent GPU machine."""

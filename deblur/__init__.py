"""deblur: de-blurring networks trained with Ray Train and applied to image buckets with Ray Data."""

__version__ = "0.1.0"

"""The pipeline (``deblur run``): listing, stages and sinks assembled into one Ray Data job."""

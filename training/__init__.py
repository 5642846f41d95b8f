"""qingfin.training: configs, the training loop, calibration runs and the ``qingfin`` CLI."""

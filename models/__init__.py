"""qingfin.models: the classifier network, metrics, calibration, export and evaluation.

Importing this package imports nothing heavy; torch is imported only by the modules that need
it (``modeling``, ``export``), so numpy-only pieces (``metrics``, ``calibration``) stay light.
"""

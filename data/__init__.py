"""qingfin.data: the label schema, dataset rows, and text normalizers.

Pure Python (plus small pure dependencies such as opencc): imported by training and serving
alike, so it must never import torch, transformers or datasets.
"""

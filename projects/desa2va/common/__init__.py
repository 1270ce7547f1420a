"""Facts shared by `models`, `datasets` and `inference`: special tokens and image preprocessing.

`datasets` and `models` never import each other; both import from here.
"""

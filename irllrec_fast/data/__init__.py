"""Datasets: readers, the synthetic default, and the BPR sampler.

| source                          | function          |
|---------------------------------|-------------------|
| IRLLRec / RLMRec folder         | `load_irllrec`    |
| LightGCN train.txt / test.txt   | `load_lightgcn`   |
| MovieLens-100K raw (u.data)     | `load_movielens`  |
| built-in synthetic              | `make_synthetic`  |
| any folder (format detected)    | `load_folder`     |
"""
from .dataset import Dataset, DatasetError, TextEmbeddings, binarize, interaction_matrix
from .readers import (FORMATS, detect_format, load_folder, load_irllrec, load_lightgcn,
                      load_movielens, load_text, per_user_split)
from .sampler import Batch, BPRSampler
from .synthetic import make_synthetic

__all__ = ["Dataset", "DatasetError", "TextEmbeddings", "binarize", "interaction_matrix",
           "FORMATS", "detect_format", "load_folder", "load_irllrec", "load_lightgcn",
           "load_movielens", "load_text", "per_user_split", "Batch", "BPRSampler",
           "make_synthetic"]

#!/usr/bin/env python3
"""Writes the parquet / `datasets` fixtures of sdpo-train's dataset tests
(sdpo-train/tests/data/datasets/). Needs pyarrow and datasets:

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install pyarrow datasets
    /tmp/venv/bin/python scripts/make_dataset_fixtures.py

The files are committed; tests never run Python.
"""
import json
import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict

OUT = os.path.join(os.path.dirname(__file__), "..", "sdpo-train", "tests", "data", "datasets")


def verl_rows(split, pairs):
    """verl's schema, as its data preprocessing scripts write it (e.g. examples/data_preprocess)."""
    return [
        {
            "data_source": "addition",
            "prompt": [
                {"role": "system", "content": "Answer with the number only."},
                {"role": "user", "content": f"What is {a}+{b}?"},
            ],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": str(a + b)},
            "extra_info": {"split": split, "index": i, "feedback": f"{a}+{b} is not {a + b + 1}"},
        }
        for i, (a, b) in enumerate(pairs)
    ]


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    train = verl_rows("train", [(a, b) for a in range(1, 4) for b in range(1, 4)])
    test = verl_rows("test", [(4, 1), (2, 5), (3, 3)])

    # verl's files: train.parquet / test.parquet written by pandas/pyarrow (snappy).
    pq.write_table(pa.Table.from_pylist(train), os.path.join(OUT, "verl_train.parquet"))
    pq.write_table(pa.Table.from_pylist(test), os.path.join(OUT, "verl_test.parquet"), compression="zstd")

    # No rows (an empty shard of a split).
    pq.write_table(pa.Table.from_pylist(train).slice(0, 0), os.path.join(OUT, "verl_empty.parquet"))

    # Flat columns under other names (the column mapping picks them).
    flat = [{"question": f"{a}*{b}=", "solution": a * b, "hint": "multiply"} for a in range(1, 4) for b in range(2, 4)]
    pq.write_table(pa.Table.from_pylist(flat), os.path.join(OUT, "flat.parquet"), compression="gzip")

    # A bad file: the prompt column holds numbers.
    pq.write_table(pa.table({"prompt": [1, 2, 3], "answer": ["2", "4", "6"]}), os.path.join(OUT, "bad_prompt.parquet"))

    # `datasets`: save_to_disk (Arrow shards, a DatasetDict with train/test) and the parquet
    # layout push_to_hub writes (data/SPLIT-00000-of-0000N.parquet).
    dd = DatasetDict({"train": Dataset.from_list(train), "test": Dataset.from_list(test)})
    dd.save_to_disk(os.path.join(OUT, "hf_saved"))
    Dataset.from_list(train).save_to_disk(os.path.join(OUT, "hf_saved_single"))
    hub = os.path.join(OUT, "hf_hub_layout", "data")
    os.makedirs(hub)
    Dataset.from_list(train[:5]).to_parquet(os.path.join(hub, "train-00000-of-00002.parquet"))
    Dataset.from_list(train[5:]).to_parquet(os.path.join(hub, "train-00001-of-00002.parquet"))
    Dataset.from_list(test).to_parquet(os.path.join(hub, "test-00000-of-00001.parquet"))


if __name__ == "__main__":
    main()

"""Save and reload a trained LM with its tokenizer: one folder, reloadable by path.

Folder layout:
    model.safetensors   the LM's weights (tied tensors stored once)
    config.json         the LMConfig fields
    tokenizer.json      the BPE tokenizer (absent for the byte tokenizer)
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
from torch import nn

from deepnotes.data.lm_tokenizers import BPETokenizer, ByteTokenizer
from deepnotes.models.lm import LM, LMConfig


def save_lm(model: LM, tokenizer, folder: str | os.PathLike) -> Path:
    """Write model.safetensors, config.json and tokenizer.json (BPE only) into folder."""
    from safetensors.torch import save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(dataclasses.asdict(model.cfg), indent=1))
    if isinstance(tokenizer, BPETokenizer):
        tokenizer.save(folder / "tokenizer.json")
    return folder


def load_lm(folder: str | os.PathLike, device: str | torch.device = "cpu"):
    """-> (LM in eval mode on device, tokenizer) from a folder written by `save_lm`."""
    from safetensors.torch import load_model

    folder = Path(folder)
    if not (folder / "model.safetensors").exists():
        raise ValueError(f"{folder} holds no model.safetensors (run `deepnotes run base-lm`)")
    cfg = LMConfig(**json.loads((folder / "config.json").read_text()))
    model = LM(cfg)
    load_model(model, str(folder / "model.safetensors"), device="cpu")
    tok_path = folder / "tokenizer.json"
    tok = BPETokenizer.load(tok_path) if tok_path.exists() else ByteTokenizer()
    return model.to(device).eval(), tok


def save_module(module: nn.Module, path: str | os.PathLike, meta: dict | None = None) -> None:
    """Weights of any module as safetensors, with JSON-able metadata (e.g. head counts)."""
    from safetensors.torch import save_model

    save_model(module, str(path), metadata={"meta": json.dumps(meta or {})})


def module_meta(path: str | os.PathLike) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return json.loads((f.metadata() or {}).get("meta", "{}"))

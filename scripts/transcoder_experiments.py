#!/usr/bin/env python
"""Fast training experiments for starter-pack transcoders on cached activations.

A full starter-pack build takes two hours on 2 cores, mostly in the model's forward passes.
This script runs those forwards once (``collect``: mlp_in/mlp_out of a few layers over the
starter corpus, fp16 safetensors in ``--cache``) and then trains transcoders on the cache with
any ``TrainConfig`` override (``run``), a 2M-token schedule in ~15 minutes for three layers:

    python scripts/transcoder_experiments.py collect --layers 15,18,29 --tokens 600000
    python scripts/transcoder_experiments.py run base
    python scripts/transcoder_experiments.py run multi multi_topk=0.125 aux_k=32 --threads 1

(overrides come before the options)

``run`` prints one JSON line per call: per layer the held-out FVU, L0 and dead fraction (never
fires on the held-out cache) and the training-time dead fraction. The corpus comes from
``starter_build/corpus`` (run ``scripts/build_starter_pack.py`` up to its train stage first).
The held-out cache (17k tokens) is small: compare variants with it, report packs with the
build's 100k-token scan.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from interp_widgets.dictionaries.train import (  # noqa: E402
    DictionarySpec,
    TrainConfig,
    _rows,
    read_sites,
    train_dictionaries,
)
from interp_widgets.models.sites import Site  # noqa: E402

ROWS = 8 * 127  # one training batch of the build: 8 x 128 tokens, position 0 dropped


def collect(args: argparse.Namespace) -> None:
    import build_starter_pack as b

    import interp_widgets as iw

    corpus, _ = b.full_corpus(Path(args.build_dir), 0)
    train, held = corpus.split(every=20)
    model = iw.load_model()
    layers = [int(x) for x in args.layers.split(",")]
    sites = [Site(kind, L) for L in layers for kind in ("mlp_in", "mlp_out")]
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    for split, c, n in (("held", held, 16_384), ("train", train, args.tokens)):
        bufs: dict[Site, list[torch.Tensor]] = {s: [] for s in sites}
        got, t0 = 0, time.time()
        for ids in c.token_batches(model.tokenizer, batch_size=8, seq_len=128):
            acts = read_sites(model, ids, sites)
            for s in sites:
                bufs[s].append(_rows(acts[s]).half())
            got += bufs[sites[0]][-1].shape[0]
            if got >= n:
                break
            if len(bufs[sites[0]]) % 50 == 0:
                print(f"{split}: {got:,} tokens, {got / (time.time() - t0):.0f} tok/s", flush=True)
        save_file({str(s): torch.cat(v) for s, v in bufs.items()}, str(cache / f"acts_{split}.safetensors"))
        print(f"saved {split}: {got:,} tokens", flush=True)


def _override(key: str, value: str) -> object:
    if key not in TrainConfig.__dataclass_fields__:
        raise SystemExit(f"unknown TrainConfig field {key!r}: one of {sorted(TrainConfig.__dataclass_fields__)}")
    default = TrainConfig.__dataclass_fields__[key].default
    if isinstance(default, bool):
        return value.lower() in ("1", "true", "yes")
    if isinstance(default, int):
        return int(float(value))
    return float(value)


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    tr = load_file(str(cache / "acts_train.safetensors"))
    he = load_file(str(cache / "acts_held.safetensors"))
    layers = sorted({int(k.split(".")[1]) for k in tr})
    if args.layers:
        layers = [int(x) for x in args.layers.split(",")]
    overrides = {k: _override(k, v) for k, v in (kv.split("=", 1) for kv in args.overrides)}
    cfg = TrainConfig(**{"max_tokens": args.tokens, "lr": 3e-3, "seed": 0, **overrides})
    sites = sorted({Site(kind, L) for L in layers for kind in ("mlp_in", "mlp_out")}, key=lambda s: s.order_key)
    n = next(iter(tr.values())).shape[0]

    def stream():
        while True:  # epochs over the cache, in order (the trainer's shuffle buffer mixes rows)
            for i in range(0, n - ROWS, ROWS):
                yield {s: tr[str(s)][i:i + ROWS].float() for s in sites}

    specs = [DictionarySpec.transcoder(L, args.width, args.k, skip=args.skip) for L in layers]
    t0 = time.time()
    dicts, report = train_dictionaries(None, specs, None, config=cfg, activations=stream(), d_model=576,
                                       progress=False)
    res = {}
    for L in layers:
        d = dicts[f"transcoder.{L}"]
        x, y = he[f"mlp_in.{L}"].float(), he[f"mlp_out.{L}"].float()
        with torch.no_grad():
            f, recon = d.encode(x), d.reconstruct(x)
            fvu = float((y - recon).pow(2).sum() / (y - y.mean(0)).pow(2).sum())
        res[L] = {"fvu": round(fvu, 3), "l0": round(float((f > 0).sum(-1).float().mean()), 1),
                  "dead_held": round(1 - float((f > 0).any(0).float().mean()), 3),
                  "dead_train": round(report.metrics[f"transcoder.{L}"]["dead"], 3)}
    print(json.dumps({"name": args.name, "overrides": overrides, "skip": args.skip, "tokens": report.tokens,
                      "seconds": round(time.time() - t0), "layers": res}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=str(ROOT / "starter_build" / "acts_cache"))
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect", help="cache mlp_in/mlp_out activations of some layers")
    c.add_argument("--layers", default="15,18,29")
    c.add_argument("--tokens", type=int, default=600_000)
    c.add_argument("--build-dir", default=str(ROOT / "starter_build"))
    r = sub.add_parser("run", help="train transcoders on the cache with TrainConfig overrides")
    r.add_argument("name")
    r.add_argument("overrides", nargs="*", help="TrainConfig field=value, e.g. multi_topk=0.125")
    r.add_argument("--layers", default="", help="subset of the cached layers")
    r.add_argument("--tokens", type=int, default=2_000_000, help="schedule length (epochs over the cache)")
    r.add_argument("--width", type=int, default=768)
    r.add_argument("--k", type=int, default=40)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--no-skip", dest="skip", action="store_false", help="plain transcoders (no W_skip)")
    args = ap.parse_args()
    collect(args) if args.cmd == "collect" else run(args)


if __name__ == "__main__":
    main()

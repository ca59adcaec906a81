#!/usr/bin/env python
"""Build the SmolLM2-135M-Instruct starter pack: transcoders (all layers), residual SAEs,
automatic labels, a precomputed FeatureIndex, metrics.json and a README card.

Reproducible from offline text only (Debian packages + the model's own generations), in one
command that fits a developer session on 2 CPU cores:

    apt-get install -y python3.11-doc dict-gcide dict-foldoc dict-jargon bible-kjv-text fortunes
    nice -n 5 python scripts/build_starter_pack.py --budget-minutes 100 > starter_build/build.log 2>&1

Stages (each skipped when its output already exists, so an interrupted build resumes):
corpus -> generate -> train (checkpointed) -> export -> evaluate -> index + labels -> card.
Build outputs and checkpoints go to ``starter_build/`` (git-ignored); the pack goes to
``interp_widgets/data/starter/``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import interp_widgets as iw  # noqa: E402
from interp_widgets.corpus import Corpus, html_to_text  # noqa: E402
from interp_widgets.dictionaries.base import TranscoderSet, load_ours  # noqa: E402
from interp_widgets.dictionaries.train import (  # noqa: E402
    DictionarySpec,
    TrainConfig,
    evaluate,
    train_dictionaries,
)
from interp_widgets.files import atomic_write_json, atomic_write_text  # noqa: E402

LOG_T0 = time.time()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{(time.time() - LOG_T0) / 60:5.1f}m] {msg}", flush=True)


# ----------------------------------------------------------------------------- corpus sources
SOURCES = {
    "python3.11-doc": {"licence": "PSF License Agreement (Python Software Foundation)",
                       "path": "/usr/share/doc/python3.11/html", "chars": 5_000_000},
    "dict-gcide": {"licence": "GPL-3+ (GNU Collaborative International Dictionary of English 0.48)",
                   "path": "/usr/share/dictd/gcide.dict.dz", "chars": 2_500_000},
    "bible-kjv-text": {"licence": "King James Version text: public domain (Debian package GPL-2+)",
                       "path": "/usr/bin/bible", "chars": 1_500_000},
    "dict-foldoc": {"licence": "GFDL-1.1+ (Free On-line Dictionary of Computing)",
                    "path": "/usr/share/dictd/foldoc.dict.dz", "chars": 800_000},
    "dict-jargon": {"licence": "public domain / GPL-2+ (The Jargon File 4.4.7)",
                    "path": "/usr/share/dictd/jargon.dict.dz", "chars": 600_000},
    "fortunes": {"licence": "BSD-style / public domain (fortune-mod data, see copyright)",
                 "path": "/usr/share/games/fortunes", "chars": 600_000},
}


def chunk_paragraphs(text: str, size: int = 1500) -> list[str]:
    """Split text into ~``size``-character documents at blank lines (keeps paragraphs whole)."""
    out, cur, n = [], [], 0
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        if not para:
            continue
        cur.append(para)
        n += len(para)
        if n >= size:
            out.append("\n\n".join(cur))
            cur, n = [], 0
    if cur:
        out.append("\n\n".join(cur))
    return out


def read_source(name: str) -> list[str]:
    src = SOURCES[name]
    if name == "python3.11-doc":
        docs = []
        for f in sorted(Path(src["path"]).rglob("*.html")):
            if f.name in ("genindex.html", "search.html", "py-modindex.html") or "genindex" in f.name:
                continue
            text = html_to_text(f.read_text(encoding="utf-8", errors="replace"))
            docs += chunk_paragraphs(text)
        return docs
    if name.startswith("dict-"):
        with gzip.open(src["path"], "rt", encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        return [d for d in chunk_paragraphs(text) if "00-database" not in d]
    if name == "bible-kjv-text":
        text = subprocess.run(["bible", "-m", "8192", "Ge1:1-Re22:21"], capture_output=True,
                              text=True, check=True).stdout
        verses = [line for line in text.splitlines() if line.strip()]
        return ["\n".join(verses[i:i + 12]) for i in range(0, len(verses), 12)]
    if name == "fortunes":
        docs = []
        for f in sorted(Path(src["path"]).iterdir()):
            if f.is_file() and "." not in f.name:
                items = f.read_text(encoding="utf-8", errors="replace").split("\n%\n")
                docs += ["\n\n".join(items[i:i + 6]) for i in range(0, len(items), 6)]
        return docs
    raise ValueError(name)


def build_corpus(build: Path, seed: int) -> None:
    out = build / "corpus" / "sources.jsonl.gz"
    if out.is_file():
        log(f"corpus: {out} exists, skipped")
        return
    rng = random.Random(seed)
    records, meta = [], []
    for name, src in SOURCES.items():
        if not Path(src["path"]).exists():
            raise SystemExit(f"missing {src['path']}: apt-get install -y {name}")
        docs = read_source(name)
        rng.shuffle(docs)
        taken, chars = [], 0
        for d in docs:
            if chars >= src["chars"]:
                break
            taken.append(d)
            chars += len(d)
        records += [{"text": d, "source": name} for d in taken]
        meta.append({"name": name, "licence": src["licence"], "documents": len(taken), "chars": chars,
                     "origin": f"Debian package {name} ({src['path']})"})
        log(f"corpus: {name}: {len(taken)} docs, {chars / 1e6:.2f}M chars")
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(out, "wt", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    atomic_write_json(build / "corpus" / "sources.json", meta)


# ----------------------------------------------------------------------------- generations
PLACES = [
    ("Paris", "France", "the Eiffel Tower"), ("Paris", "France", "the Louvre"),
    ("Paris", "France", "Notre-Dame de Paris"), ("Paris", "France", "the Arc de Triomphe"),
    ("London", "the United Kingdom", "Big Ben"), ("Rome", "Italy", "the Colosseum"),
    ("Berlin", "Germany", "the Brandenburg Gate"), ("Madrid", "Spain", "the Prado Museum"),
    ("Tokyo", "Japan", "the Tokyo Tower"), ("Beijing", "China", "the Forbidden City"),
    ("Moscow", "Russia", "the Kremlin"), ("Cairo", "Egypt", "the Pyramids of Giza"),
    ("New York", "the United States", "the Statue of Liberty"), ("Sydney", "Australia", "the Opera House"),
    ("Athens", "Greece", "the Acropolis"), ("Istanbul", "Turkey", "the Hagia Sophia"),
    ("Rio de Janeiro", "Brazil", "Christ the Redeemer"), ("Agra", "India", "the Taj Mahal"),
    ("Amsterdam", "the Netherlands", "the Rijksmuseum"), ("Lisbon", "Portugal", "the Belem Tower"),
    ("Vienna", "Austria", "Schonbrunn Palace"), ("Prague", "the Czech Republic", "Charles Bridge"),
    ("Lyon", "France", "the Basilica of Fourviere"), ("Marseille", "France", "the Old Port"),
    ("Dallas", "Texas", "Reunion Tower"), ("Ottawa", "Canada", "Parliament Hill"),
    ("Mexico City", "Mexico", "the Zocalo"), ("Buenos Aires", "Argentina", "the Obelisk"),
    ("Nairobi", "Kenya", "Nairobi National Park"), ("Seoul", "South Korea", "Gyeongbokgung Palace"),
]
TEMPLATES = [
    "Write a short paragraph about {city}, the city in {country}.",
    "Describe {landmark} in {city} for a tourist.",
    "What is {city} famous for? Answer in a few sentences.",
    "Tell me about the history of {country} and its capital.",
    "Write a travel diary entry about visiting {landmark}.",
    "Explain what people eat in {city}, {country}.",
]
OTHER_PROMPTS = [
    "List ten pairs of antonyms, like hot and cold.", "What is the opposite of small? Explain.",
    "Solve step by step: 17 + 25 and 9 * 7.", "Explain how to add two fractions.",
    "Write a Python function that reverses a string, with a docstring.",
    "Write a JavaScript function that sums an array.", "Explain what a hash table is.",
    "Translate to French: The cat sleeps on the sofa.", "Translate to Spanish: Good morning, my friend.",
    "Write a short poem about the sea.", "Explain photosynthesis to a child.",
    "Give three tips for learning a new language.", "Describe the water cycle.",
    "What are the planets of the solar system?", "Summarize the story of Romeo and Juliet.",
    "Write a short dialogue between a teacher and a student.", "Explain how a bicycle works.",
    "What is the capital of the state containing Dallas?", "Name five European capitals and their countries.",
    "Écris une phrase sur Paris.", "Escribe una frase sobre Madrid.", "Schreibe einen Satz über Berlin.",
]


def generate_texts(model, build: Path, seed: int, minutes: float) -> None:
    out = build / "corpus" / "generated.jsonl"
    if out.is_file():
        log(f"generate: {out} exists, skipped")
        return
    prompts = [t.format(city=c, country=k, landmark=lm) for c, k, lm in PLACES for t in TEMPLATES]
    prompts += OTHER_PROMPTS * 2
    random.Random(seed).shuffle(prompts)
    # Paris / France first: on a busy machine the budget may end early, and the pack's tests
    # need a feature for them
    prompts.sort(key=lambda p: 0 if ("Paris" in p or "France" in p) else 1)
    tok = model.tokenizer
    torch.manual_seed(seed)
    t0, records = time.time(), []
    tok.padding_side = "left"
    for i in range(0, len(prompts), 16):
        if time.time() - t0 > minutes * 60:
            log(f"generate: budget reached after {len(records)} texts")
            break
        batch = prompts[i:i + 16]
        chats = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                         add_generation_prompt=True) for p in batch]
        enc = tok(chats, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            gen = model.hf.generate(**enc, max_new_tokens=64, do_sample=True, temperature=0.8,
                                    top_p=0.95, pad_token_id=tok.pad_token_id)
        for p, row in zip(batch, gen[:, enc["input_ids"].shape[1]:], strict=True):
            text = tok.decode(row, skip_special_tokens=True).strip()
            if text:
                records.append({"text": text, "source": "smollm2-generated", "prompt": p})
        # written after every batch so an interrupted build keeps what it generated
        atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        log(f"generate: {len(records)} texts")
    tok.padding_side = "right"
    atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    log(f"generate: {len(records)} texts in {(time.time() - t0) / 60:.1f} min")


def full_corpus(build: Path, seed: int) -> tuple[Corpus, list[dict]]:
    """All source documents plus the generations, shuffled together (seeded)."""
    recs = [json.loads(x) for x in gzip.open(build / "corpus" / "sources.jsonl.gz", "rt", encoding="utf-8")]
    gen_path = build / "corpus" / "generated.jsonl"
    gen = [json.loads(x) for x in gen_path.read_text(encoding="utf-8").splitlines()] if gen_path.is_file() else []
    # the generations are small next to the packaged text: repeat them 3x so that places such as
    # Paris are common enough to get features (recorded in the card)
    recs = recs + gen * 3
    random.Random(seed).shuffle(recs)
    meta = json.loads((build / "corpus" / "sources.json").read_text())
    meta = meta + [{"name": "smollm2-generated", "documents": len(gen), "repeats": 3,
                    "licence": "generated by SmolLM2-135M-Instruct (Apache-2.0) from the prompts in "
                               "scripts/build_starter_pack.py",
                    "chars": sum(len(r["text"]) for r in gen)}]
    texts = [r["text"] for r in recs]
    return Corpus(lambda: iter(texts), name="starter corpus", sources=tuple(meta)), recs


def write_default_corpus(build: Path, recs: list[dict], seed: int) -> None:
    """The small sample shipped as ``Corpus.default()``: Python docs prose + generations only
    (both licence-compatible with MIT redistribution)."""
    target = ROOT / "interp_widgets" / "data" / "corpus" / "default.jsonl.gz"
    rng = random.Random(seed)
    py = [r for r in recs if r["source"] == "python3.11-doc"]
    gen = list({r["text"]: r for r in recs if r["source"] == "smollm2-generated"}.values())
    rng.shuffle(py)
    take, chars = [], 0
    for r in py:
        if chars > 260_000:
            break
        take.append(r)
        chars += len(r["text"])
    take += gen[:200]
    rng.shuffle(take)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps({"text": r["text"], "source": r["source"]}, ensure_ascii=False) + "\n"
                   for r in take)
    # mtime=0: the same inputs give byte-identical output (no spurious git diffs on rebuilds)
    with gzip.GzipFile(target, "wb", compresslevel=9, mtime=0) as fh:
        fh.write(data.encode("utf-8"))
    atomic_write_json(target.with_name("sources.json"), [
        {"name": "python3.11-doc", "documents": sum(r["source"] == "python3.11-doc" for r in take),
         "licence": "PSF License Agreement", "origin": "Debian package python3.11-doc, HTML to text"},
        {"name": "smollm2-generated", "documents": sum(r["source"] == "smollm2-generated" for r in take),
         "licence": "generated by SmolLM2-135M-Instruct (Apache-2.0)",
         "origin": "scripts/build_starter_pack.py prompts (places, antonyms, arithmetic, code, translation)"},
    ])
    log(f"default corpus: {len(take)} docs, {target.stat().st_size / 1e3:.0f} kB -> {target}")


# ----------------------------------------------------------------------------- main
def parse_tc_layers(items: list[str], n_layers: int) -> dict[int, dict[str, float]]:
    """``["29:width=384,lr_scale=0.5"]`` -> ``{29: {"width": 384, "lr_scale": 0.5}}``."""
    kinds = {"width": int, "k": int, "lr_scale": float}
    out: dict[int, dict[str, float]] = {}
    for item in items:
        layer, _, rest = item.partition(":")
        try:
            L = int(layer)
            pairs = [kv.split("=", 1) for kv in rest.split(",") if kv.strip()]
            vals = {key.strip(): kinds[key.strip()](val) for key, val in pairs}
        except (ValueError, KeyError):
            raise SystemExit(f"--tc-layer {item!r}: expected 'L:key=val,...' with keys "
                             f"{', '.join(kinds)}, e.g. '29:width=384,lr_scale=0.5'") from None
        if not 0 <= L < n_layers or not vals:
            raise SystemExit(f"--tc-layer {item!r}: layer must be in 0-{n_layers - 1}, with a setting")
        out.setdefault(L, {}).update(vals)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget-minutes", type=float, default=100.0,
                    help="total wall-clock budget; training gets what the other stages leave")
    ap.add_argument("--reserve-minutes", type=float, default=22.0,
                    help="time kept for export, evaluation, index and labels after training")
    ap.add_argument("--generate-minutes", type=float, default=5.0)
    ap.add_argument("--model", default=None, help="model to build for (default: the embedded SmolLM2)")
    ap.add_argument("--out", default=str(ROOT / "interp_widgets" / "data" / "starter"))
    ap.add_argument("--build-dir", default=str(ROOT / "starter_build"))
    ap.add_argument("--tc-width", type=int, default=768)
    ap.add_argument("--sae-width", type=int, default=1536)
    ap.add_argument("--k", type=int, default=40, help="active features per token, transcoders")
    ap.add_argument("--sae-k", type=int, default=64, help="active features per token, residual SAEs")
    ap.add_argument("--no-skip", dest="skip", action="store_false",
                    help="plain transcoders (default: skip transcoders with a linear W_skip)")
    ap.add_argument("--sae-layers", default="6,12,18,24")
    ap.add_argument("--max-tokens", type=int, default=3_000_000)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--tc-layer", action="append", default=[], metavar="L:key=val,...",
                    help="per-layer transcoder settings (width, k, lr_scale), e.g. "
                         "'29:width=384,lr_scale=0.5'; repeatable")
    ap.add_argument("--multi-topk", type=float, default=0.0,
                    help="weight of the Multi-TopK term (FVU of the top-4k reconstruction; default 0: off; "
                         "Gao et al. use 1/8)")
    ap.add_argument("--resample-every", type=int, default=0,
                    help="steps between dead-feature resamplings (default 0: AuxK only; see TrainConfig)")
    ap.add_argument("--eval-tokens", type=int, default=16_384)
    ap.add_argument("--ce-batches", type=int, default=1,
                    help="held-out batches for each dictionary's own CE splice (2 forwards each)")
    ap.add_argument("--ce-all-batches", type=int, default=4,
                    help="held-out batches for the all-transcoders CE splice")
    ap.add_argument("--scan-tokens", type=int, default=120_000)
    ap.add_argument("--top-k", type=int, default=8)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--machine-note", default="", help="how the machine was shared, for metrics.json")
    ap.add_argument("--no-default-corpus", action="store_true",
                    help="do not rewrite the packaged Corpus.default() sample")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    build, pack = Path(args.build_dir), Path(args.out)
    build.mkdir(parents=True, exist_ok=True)
    # every invocation is recorded: a resumed build shows which command did which stage
    with open(build / "commands.txt", "a", encoding="utf-8") as fh:
        fh.write(f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} {' '.join(sys.argv)}\n")
    timings: dict[str, float] = {}
    t_start = time.time()
    log(f"build: budget {args.budget_minutes} min, model {args.model or 'default'}, out {pack}")

    t = time.time()
    build_corpus(build, args.seed)
    timings["corpus_s"] = time.time() - t
    model = iw.load_model(args.model)
    t = time.time()
    generate_texts(model, build, args.seed, args.generate_minutes)
    timings["generate_s"] = time.time() - t
    corpus, recs = full_corpus(build, args.seed)
    if not args.no_default_corpus:
        write_default_corpus(build, recs, args.seed)
    train, held_out = corpus.split(every=20)

    sae_layers = [int(x) for x in args.sae_layers.split(",") if x.strip() and int(x) < model.n_layers]
    per_layer = parse_tc_layers(args.tc_layer, model.n_layers)
    per_layer_json = {str(L): v for L, v in per_layer.items()}  # recorded in the pack and metrics.json
    specs = []
    for L in range(model.n_layers):
        o = {"width": args.tc_width, "k": args.k, "lr_scale": 1.0, **per_layer.get(L, {})}
        specs.append(DictionarySpec.transcoder(L, o["width"], o["k"], skip=args.skip, lr_scale=o["lr_scale"]))
    specs += [DictionarySpec.sae(f"resid_post.{L}", args.sae_width, args.sae_k) for L in sae_layers]

    # ---- train (resumes from starter_build/ckpt)
    done_marker = build / "trained.json"
    if not done_marker.is_file():
        spent = (time.time() - t_start) / 60
        train_minutes = max(1.0, args.budget_minutes - spent - args.reserve_minutes)
        log(f"train: {len(specs)} dictionaries, budget {train_minutes:.1f} min, max {args.max_tokens:,} tokens")
        cfg = TrainConfig(max_tokens=args.max_tokens, budget_minutes=train_minutes, lr=args.lr,
                          seed=args.seed, checkpoint_every_s=240, resample_every=args.resample_every,
                          multi_topk=args.multi_topk)
        dicts, report = train_dictionaries(model, specs, train, config=cfg,
                                           checkpoint_dir=build / "ckpt", progress=True)
        log(f"train: {report}")
        tmp = build / "trained"
        for name, d in dicts.items():
            d.save(tmp / name)
        atomic_write_json(done_marker, {"tokens": report.tokens, "steps": report.steps,
                                        "seconds": report.seconds, "stopped_by": report.stopped_by,
                                        "train_metrics": report.metrics})
    trained = json.loads(done_marker.read_text())
    timings["train_s"] = trained["seconds"]

    # ---- export the pack in fp16 (our format)
    t = time.time()
    tcs = {sp.site.layer: load_ours(build / "trained" / sp.name) for sp in specs if sp.kind == "transcoder"}
    tset = TranscoderSet(tcs, name="starter transcoders", metadata={
        "model": model.name, "tokens_seen": trained["tokens"], "k": args.k, "width": args.tc_width,
        "skip": args.skip, "per_layer": per_layer_json})
    tset.save(pack / "transcoders", dtype=torch.float16)
    for sp in specs:
        if sp.kind == "sae":
            d = load_ours(build / "trained" / sp.name)
            d.name = f"starter/{sp.name}"
            d.save(pack / "saes" / sp.name, dtype=torch.float16)
    timings["export_s"] = time.time() - t

    # ---- evaluate what ships (fp16 weights reloaded from disk)
    t = time.time()
    shipped_tcs = load_ours(pack / "transcoders")
    shipped = {f"transcoder.{L}": tc for L, tc in shipped_tcs.items()}
    shipped.update({sp.name: load_ours(pack / "saes" / sp.name) for sp in specs if sp.kind == "sae"})
    eval_path = build / "eval.json"
    if eval_path.is_file():
        metrics = json.loads(eval_path.read_text())
    else:
        metrics = evaluate(model, shipped, held_out, max_tokens=args.eval_tokens,
                           ce_batches=args.ce_batches, ce_all_batches=args.ce_all_batches,
                           progress=True)
        atomic_write_json(eval_path, metrics)
    timings["evaluate_s"] = time.time() - t
    log("evaluate: " + json.dumps(summarise(metrics, specs), indent=None))

    # ---- index + labels
    t = time.time()
    from interp_widgets.analysis.scan import auto_labels, save_index_set, scan_many

    index_dir = pack / "index"
    scan_corpus = held_out
    indexes = scan_many(model, shipped, scan_corpus, max_tokens=args.scan_tokens, top_k=args.top_k,
                        window=args.window, checkpoint_dir=build / "scan_ckpt", progress=True)
    save_index_set(index_dir, indexes)
    timings["index_s"] = time.time() - t
    # dead = never fires on the (larger) scan of held-out text; the eval-batch figure is kept too
    for name, ix in indexes.items():
        m = metrics[name]
        m["dead_fraction_eval_batches"] = m["dead_fraction"]
        m["dead_fraction"] = 1.0 - len(ix.live) / ix.n_features
        m["dead_fraction_training"] = trained["train_metrics"].get(name, {}).get("dead")
    t = time.time()
    n_labelled = {}
    for name, d in shipped.items():
        labels = auto_labels(model, d, indexes[name])
        d.labels = labels
        d.save_labels()
        n_labelled[name] = len(labels)
    timings["labels_s"] = time.time() - t

    # ---- metrics.json + card
    size = sum(f.stat().st_size for f in pack.rglob("*") if f.is_file())
    summary = summarise(metrics, specs)
    out = {
        "model": model.name,
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": args.threads,
                    "torch": torch.__version__, "load_average_at_end": list(os.getloadavg()),
                    "note": args.machine_note},
        "command": " ".join(sys.argv),
        "commands": (build / "commands.txt").read_text(encoding="utf-8").splitlines(),
        "corpus": {"sources": list(corpus.sources), "held_out": "every 20th document",
                   "scan_tokens": args.scan_tokens},
        "index": {"top_k": args.top_k, "window": args.window, "tokens": args.scan_tokens,
                  "layout": "index/tokens.safetensors + vocab.json shared; <name>.safetensors/.json"},
        "evaluation": {"eval_tokens": args.eval_tokens, "ce_batches_per_dictionary": args.ce_batches,
                       "ce_batches_all_transcoders": args.ce_all_batches, "batch": "8 x 128"},
        "training": {"tokens_seen": trained["tokens"], "steps": trained["steps"],
                     "seconds": round(trained["seconds"], 1), "stopped_by": trained["stopped_by"],
                     "tokens_per_s": round(trained["tokens"] / max(trained["seconds"], 1e-9), 1),
                     "architecture": "topk", "k": args.k, "sae_k": args.sae_k, "transcoder_width": args.tc_width,
                     "transcoder_skip": args.skip,
                     "transcoder_per_layer": per_layer_json,
                     "sae_width": args.sae_width, "sae_layers": sae_layers, "lr": args.lr,
                     "batch": f"{8} x {128} tokens, position 0 dropped", "seed": args.seed,
                     "aux_loss": "AuxK (k_aux 256, coef 1/32), dead after 100k tokens"
                                 + (f"; Multi-TopK term {args.multi_topk} x FVU(top 4k)" if args.multi_topk else "")
                                 + (f"; dead features resampled every {args.resample_every} steps "
                                    f"(before the lr decay)" if args.resample_every else ""),
                     "resample_every": args.resample_every,
                     "multi_topk": args.multi_topk},
        "summary": summary,
        "per_dictionary": {k: v for k, v in metrics.items() if isinstance(v, dict)},
        "clean_loss": metrics.get("clean_loss"),
        "labels": n_labelled,
        "size_bytes": size,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }
    atomic_write_json(pack / "metrics.json", out)
    atomic_write_text(pack / "README.md", card(out))
    log(f"done: pack {size / 1e6:.1f} MB in {pack}; total {(time.time() - t_start) / 60:.1f} min")


def summarise(metrics: dict, specs: list) -> dict:
    tc = [metrics[s.name] for s in specs if s.kind == "transcoder" and s.name in metrics]
    sae = {s.name: metrics[s.name] for s in specs if s.kind == "sae" and s.name in metrics}
    allm = metrics.get("all_transcoders", {})
    med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
    s = {
        "transcoders_median_fvu": med([m["fvu"] for m in tc]),
        "transcoders_max_fvu": max((m["fvu"] for m in tc), default=None),
        "transcoders_mean_l0": statistics.mean([m["l0"] for m in tc]) if tc else None,
        "transcoders_median_dead_fraction": med([m["dead_fraction"] for m in tc]),
        "transcoders_max_dead_fraction": max((m["dead_fraction"] for m in tc), default=None),
        "transcoders_median_ce_loss_recovered": med([m["ce_loss_recovered"] for m in tc if "ce_loss_recovered" in m]),
        "all_transcoders_ce_loss_recovered": allm.get("ce_loss_recovered"),
        "saes_fvu": {k: v["fvu"] for k, v in sae.items()},
        "saes_ce_loss_recovered": {k: v.get("ce_loss_recovered") for k, v in sae.items()},
        "saes_dead_fraction": {k: v["dead_fraction"] for k, v in sae.items()},
    }
    s["targets"] = {
        "transcoders median FVU <= 0.3 at L0 <= 64": bool(tc) and s["transcoders_median_fvu"] <= 0.3
        and s["transcoders_mean_l0"] <= 64,
        "all-30 CE loss recovered >= 0.8": (s["all_transcoders_ce_loss_recovered"] or 0) >= 0.8,
        "dead fraction <= 10% (every dictionary)": all(
            m["dead_fraction"] <= 0.10 for k, m in metrics.items() if isinstance(m, dict) and "dead_fraction" in m),
        "SAEs FVU <= 0.2": bool(sae) and all(v["fvu"] <= 0.2 for v in sae.values()),
    }
    return s


def card(m: dict) -> str:
    s, tr = m["summary"], m["training"]
    rows = []
    for name, v in m["per_dictionary"].items():
        if "fvu" not in v:
            continue
        ce = v.get("ce_loss_recovered")
        rows.append(f"| {name} | {v['fvu']:.3f} | {v['l0']:.1f} | {100 * v['dead_fraction']:.1f}% | "
                    f"{'' if ce is None else f'{ce:.3f}'} |")
    src = "\n".join(f"- **{x['name']}**: {x.get('documents', '?')} documents, "
                    f"{x.get('chars', 0) / 1e6:.2f}M characters. Licence: {x.get('licence', '?')}."
                    + (f" Repeated {x['repeats']}x." if x.get("repeats") else "")
                    for x in m["corpus"]["sources"])
    targets = "\n".join(f"- {k}: **{'met' if v else 'NOT met'}**" for k, v in s["targets"].items())
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    per_layer = "".join(f"; layer {L}: " + ", ".join(f"{k} {v}" for k, v in kv.items())
                        for L, kv in tr.get("transcoder_per_layer", {}).items())
    return f"""# Starter pack for {m['model']}

Built by `scripts/build_starter_pack.py` on {m['built_at']} ({m['machine']['cpus']} CPU cores,
torch {m['machine']['torch']}). Every number below comes from `metrics.json`, which the script
writes; nothing here is edited by hand.

Commands (in order; a resumed build skips the stages already done):

{chr(10).join(f"    {c}" for c in m['commands'])}

## Contents

- `transcoders/`: TopK transcoders `mlp_in.L -> mlp_out.L` for every layer (width
  {tr['transcoder_width']}, k {tr['k']}{', with a linear skip `W_skip` (skip transcoders)' if tr.get('transcoder_skip') else ''}{per_layer}),
  fp16, our format (`iw.load_transcoders("starter")`).
- `saes/resid_post.L/`: TopK residual-stream SAEs at layers {tr['sae_layers']} (width
  {tr['sae_width']}, k {tr.get('sae_k', tr['k'])}) (`iw.load_dictionary("starter/resid_post.12")`).
- `labels.json` beside each dictionary: automatic labels for the live features from their
  evidence, written as `top activating tokens → top promoted tokens`. Edit them with
  `dictionary.set_label(i, "...")`.
- `index/`: a precomputed FeatureIndex per dictionary (top {m['index']['top_k']} examples with
  activation windows, histograms, density, mean activation) over {m['corpus']['scan_tokens']:,}
  held-out tokens.

## Training

- Tokens seen: **{tr['tokens_seen']:,}** ({tr['steps']} steps, {tr['seconds'] / 60:.1f} min,
  {tr['tokens_per_s']} tokens/s, stopped by {tr['stopped_by']}), all dictionaries fed from the
  same forward passes. Machine: {m['machine']['note']} (load average at the end
  {', '.join(f'{x:.1f}' for x in m['machine']['load_average_at_end'])}).
- {tr['batch']}; Adam lr {tr['lr']} with warmup and linear decay; unit-norm decoder rows;
  {tr['aux_loss']}; inputs scaled to mean squared norm d_model (folded into the weights).
- Position 0 (SmolLM2's attention sink) is excluded from training, statistics and splicing.

## Corpus (offline, reproducible)

{src}

Held out: {m['corpus']['held_out']} (metrics and the index use only held-out text).

## Metrics (held-out, fp16 weights as shipped)

- Transcoders: median FVU **{fmt(s['transcoders_median_fvu'])}** (max {fmt(s['transcoders_max_fvu'])}),
  mean L0 {fmt(s['transcoders_mean_l0'])}, median dead fraction {fmt(s['transcoders_median_dead_fraction'])}
  (max {fmt(s['transcoders_max_dead_fraction'])}).
- CE loss recovered, all {len([k for k in m['per_dictionary'] if k.startswith('transcoder.')])} transcoders
  spliced in together: **{fmt(s['all_transcoders_ce_loss_recovered'])}**; median per layer
  {fmt(s['transcoders_median_ce_loss_recovered'])}.
- SAEs FVU: {', '.join(f'{k} {v:.3f}' for k, v in s['saes_fvu'].items())}.
- Clean next-token loss on the held-out batches: {fmt(m.get('clean_loss'))}.

Targets:

{targets}

| dictionary | FVU | L0 | dead | CE loss recovered |
|---|---|---|---|---|
{chr(10).join(rows)}

Definitions: FVU = sum of squared reconstruction errors / total variance of the target;
L0 = mean active features per token; dead = features that never fire on the
{m['corpus']['scan_tokens']:,} held-out tokens of the index scan; FVU and L0 use
{m['evaluation']['eval_tokens']:,} held-out tokens; per-dictionary CE uses
{m['evaluation']['ce_batches_per_dictionary']} batch(es) of 8 x 128 tokens, the all-transcoders CE
{m['evaluation']['ce_batches_all_transcoders']};
CE loss recovered = (L_zero - L_spliced) / (L_zero - L_clean), where the site is replaced by the
reconstruction (spliced) or by zeros (zero) at positions >= 1.

Pack size: {m['size_bytes'] / 1e6:.1f} MB. Stage timings (s): {m['timings_s']}.
"""


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Write a full-size, random-valued Falcon-Mamba GGUF for llama.cpp speed comparisons.

The file is laid out like llama.cpp's convert_hf_to_gguf.py writes tiiuae/falcon-mamba-7b
(architecture "mamba" with mamba.ssm.dt_b_c_rms = true), but the weights are random:

  token_embd.weight          F16  (vocab, d_model)          normal(0, std)
  blk.N.attn_norm.weight     F32  (d_model,)                1
  blk.N.ssm_in.weight        F16  (2*d_inner, d_model)      normal(0, std)
  blk.N.ssm_conv1d.weight    F32  (d_inner, d_conv)         uniform(+-1/sqrt(d_conv))  (HF (d_inner,1,d_conv) squeezed)
  blk.N.ssm_conv1d.bias      F32  (d_inner,)                uniform(+-1/sqrt(d_conv))
  blk.N.ssm_x.weight         F16  (dt_rank+2*d_state, d_inner) normal(0, std)
  blk.N.ssm_dt.weight        F16  (d_inner, dt_rank)        normal(0, std)
  blk.N.ssm_dt.bias          F32  (d_inner,)                softplus^-1(dt), dt log-uniform in [1e-3, 1e-1]
  blk.N.ssm_a                F32  (d_inner, d_state)        A = -exp(A_log), A_log = log(1..d_state)
  blk.N.ssm_d                F32  (d_inner,)                1
  blk.N.ssm_out.weight       F16  (d_model, d_inner)        normal(0, std)
  output_norm.weight         F32  (d_model,)                1
  output.weight              F16  (vocab, d_model)          normal(0, std)

(numpy shapes; GGUF stores dimensions reversed.) 1-D tensors, norms, conv1d and ssm_a are F32 as the
converter writes them; matrices are F16 (file type MOSTLY_F16), ready for llama-quantize.

Tokenizer metadata comes from a Hugging Face tokenizer.json (byte-level BPE, Falcon): model "gpt2",
pre-tokenizer "falcon", tokens, token types (added special tokens CONTROL, ids missing from the vocab
UNUSED "[PADi]"), merges, and bos/eos/padding ids from config.json.

Tensors are generated and written one at a time, so memory stays at about one tensor (~1.6 GB peak for
the 7B embedding), and the 7B F16 file is ~14.5 GB.

  python3 make_random_gguf.py --config CONFIG.json --tokenizer tokenizer.json --out falcon-mamba-7b-random-F16.gguf

Needs `numpy` and `gguf` (PyPI `gguf`, or llama.cpp's gguf-py: pip install VENDORED/gguf-py).
"""

import argparse
import json
import math
import sys
import time

import numpy as np
import gguf

FALCON_MAMBA_7B = dict(hidden_size=4096, num_hidden_layers=64, intermediate_size=8192, state_size=16,
                       conv_kernel=4, time_step_rank=256, vocab_size=65024, layer_norm_epsilon=1e-5,
                       bos_token_id=0, eos_token_id=11, pad_token_id=11, model_type="falcon_mamba")


def load_config(path):
    cfg = dict(FALCON_MAMBA_7B)
    if path:
        with open(path, encoding="utf-8") as f:
            cfg.update(json.load(f))
    return cfg


def tokenizer_metadata(path, vocab_size):
    """tokens, token types, merges from a byte-level BPE tokenizer.json."""
    with open(path, encoding="utf-8") as f:
        tok = json.load(f)
    model = tok["model"]
    if model.get("type") != "BPE":
        raise SystemExit(f"{path}: expected a BPE tokenizer, got {model.get('type')}")
    reverse = {i: t for t, i in model["vocab"].items()}
    added = {a["id"]: a for a in tok.get("added_tokens", [])}
    for i, a in added.items():
        reverse.setdefault(i, a["content"])
    if max(reverse) >= vocab_size:
        raise SystemExit(f"tokenizer has id {max(reverse)} >= vocab_size {vocab_size}")
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added and added[i].get("special", False):
            tokens.append(reverse[i])
            types.append(gguf.TokenType.CONTROL)
        elif i in added:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.NORMAL)
    merges = model.get("merges", [])
    if merges and not isinstance(merges[0], str):  # newer [a, b] form; spaces encoded as U+0120
        merges = [" ".join("".join(chr(ord(c) + 256) if c == " " else c for c in part) for part in pair)
                  for pair in merges]
    return tokens, types, merges


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="/work/data/falcon-mamba-7b-random/config.json",
                    help="HF config.json for the dimensions (Falcon-Mamba-7B dims if missing)")
    ap.add_argument("--tokenizer", default="/work/shared/tokenizer/falcon/tokenizer.json")
    ap.add_argument("--out", required=True, help="output .gguf path")
    ap.add_argument("--std", type=float, default=0.02, help="std of the normal weight matrices")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, default=None, help="override layer count (for a quick small test)")
    args = ap.parse_args()

    cfg = load_config(args.config)
    d_model = cfg["hidden_size"]
    n_layer = args.layers or cfg["num_hidden_layers"]
    d_inner = cfg["intermediate_size"]
    d_state = cfg["state_size"]
    d_conv = cfg["conv_kernel"]
    dt_rank = cfg["time_step_rank"]
    eps = cfg["layer_norm_epsilon"]
    vocab = -(cfg["vocab_size"] // -8) * 8  # the converter pads the vocabulary to a multiple of 8
    dt_b_c_rms = cfg.get("model_type") == "falcon_mamba"
    assert d_inner == 2 * d_model, "llama.cpp's mamba converter requires expand 2"

    rng = np.random.default_rng(args.seed)
    F16, F32 = np.float16, np.float32

    def normal(shape):
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(args.std)).astype(F16)

    def uniform(shape, bound):
        return rng.uniform(-bound, bound, shape).astype(F32)

    def dt_bias():
        dt = np.exp(rng.uniform(math.log(1e-3), math.log(1e-1), d_inner))
        return (dt + np.log(-np.expm1(-dt))).astype(F32)  # inverse softplus

    def ssm_a():
        a_log = np.log(np.arange(1, d_state + 1, dtype=F32))
        return np.ascontiguousarray(np.broadcast_to(-np.exp(a_log), (d_inner, d_state)), dtype=F32)

    # (name, numpy shape, dtype, generator)
    plan = [("token_embd.weight", (vocab, d_model), F16, normal)]
    for i in range(n_layer):
        b = f"blk.{i}."
        plan += [
            (b + "attn_norm.weight", (d_model,), F32, lambda s: np.ones(s, F32)),
            (b + "ssm_in.weight", (2 * d_inner, d_model), F16, normal),
            (b + "ssm_conv1d.weight", (d_inner, d_conv), F32, lambda s: uniform(s, 1 / math.sqrt(d_conv))),
            (b + "ssm_conv1d.bias", (d_inner,), F32, lambda s: uniform(s, 1 / math.sqrt(d_conv))),
            (b + "ssm_x.weight", (dt_rank + 2 * d_state, d_inner), F16, normal),
            (b + "ssm_dt.weight", (d_inner, dt_rank), F16, normal),
            (b + "ssm_dt.bias", (d_inner,), F32, lambda s: dt_bias()),
            (b + "ssm_a", (d_inner, d_state), F32, lambda s: ssm_a()),
            (b + "ssm_d", (d_inner,), F32, lambda s: np.ones(s, F32)),
            (b + "ssm_out.weight", (d_model, d_inner), F16, normal),
        ]
    plan += [("output_norm.weight", (d_model,), F32, lambda s: np.ones(s, F32)),
             ("output.weight", (vocab, d_model), F16, normal)]

    w = gguf.GGUFWriter(args.out, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.MAMBA])
    w.add_name("Falcon-Mamba-7B random" if n_layer == 64 and d_model == 4096 else "Falcon-Mamba random")
    w.add_context_length(2**20)
    w.add_embedding_length(d_model)
    w.add_feed_forward_length(0)
    w.add_head_count(0)
    w.add_block_count(n_layer)
    w.add_ssm_conv_kernel(d_conv)
    w.add_ssm_inner_size(d_inner)
    w.add_ssm_state_size(d_state)
    w.add_ssm_time_step_rank(dt_rank)
    w.add_layer_norm_rms_eps(eps)
    w.add_ssm_dt_b_c_rms(dt_b_c_rms)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    tokens, types, merges = tokenizer_metadata(args.tokenizer, vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("falcon")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    for key, fn in (("bos_token_id", w.add_bos_token_id), ("eos_token_id", w.add_eos_token_id),
                    ("pad_token_id", w.add_pad_token_id)):
        if isinstance(cfg.get(key), int) and 0 <= cfg[key] < vocab:
            fn(cfg[key])

    for name, shape, dtype, _ in plan:
        w.add_tensor_info(name, shape, np.dtype(dtype), int(np.prod(shape)) * np.dtype(dtype).itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()

    total = sum(int(np.prod(s)) * np.dtype(d).itemsize for _, s, d, _ in plan)
    done, start = 0, time.time()
    for n, (name, shape, dtype, gen) in enumerate(plan):
        t = gen(shape)
        assert t.shape == shape and t.dtype == dtype and np.isfinite(t).all(), name
        w.write_tensor_data(t)
        done += t.nbytes
        del t
        if n % 50 == 0 or n == len(plan) - 1:
            print(f"\r{done / 1e9:6.2f} / {total / 1e9:.2f} GB  ({time.time() - start:.0f} s)", end="", file=sys.stderr)
    w.close()
    print(f"\nwrote {args.out}: {len(plan)} tensors, {total / 1e9:.2f} GB of tensor data", file=sys.stderr)


if __name__ == "__main__":
    main()

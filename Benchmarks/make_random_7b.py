#!/usr/bin/env python3
"""Write a full-size Falcon-Mamba-7B checkpoint with random values, in the exact layout
of tiiuae/falcon-mamba-7b-4bit (bitsandbytes FP4, no double quantization, quant_state
dtype float16, every other tensor F16, config.json with the real file's quirks), sharded
with a model.safetensors.index.json. About 4.6 GB. Needs only numpy.

    python3 Benchmarks/make_random_7b.py OUT_DIR [--layers 64]

The values are random but scaled so that activations stay finite and ordinary (no
denormals, no infinities), so speed measured on it is what the real model would see.
"""
import argparse, json, os, struct
import numpy as np

FP4_MAP = np.array([0, 0.0625, 8, 12, 4, 6, 2, 3, 0, -0.0625, -8, -12, -4, -6, -2, -3], np.float32) / 12

def config(layers):
    return {
        "architectures": ["FalconMambaForCausalLM"], "bos_token_id": 0, "conv_kernel": 4,
        "eos_token_id": 11, "expand": 16, "hidden_act": "silu", "hidden_size": 4096,
        "initializer_range": 0.1, "intermediate_size": 8192, "layer_norm_epsilon": 1e-05,
        "model_type": "falcon_mamba", "num_hidden_layers": layers, "pad_token_id": 11,
        "quantization_config": {
            "_load_in_4bit": True, "_load_in_8bit": False, "bnb_4bit_compute_dtype": "float32",
            "bnb_4bit_quant_storage": "uint8", "bnb_4bit_quant_type": "fp4",
            "bnb_4bit_use_double_quant": False, "llm_int8_enable_fp32_cpu_offload": False,
            "llm_int8_has_fp16_weight": False, "llm_int8_skip_modules": None,
            "llm_int8_threshold": 6.0, "load_in_4bit": True, "load_in_8bit": False,
            "quant_method": "bitsandbytes"},
        "rescale_prenorm_residual": False, "residual_in_fp32": True, "state_size": 16,
        "tie_word_embeddings": False, "time_step_floor": 0.0001, "time_step_init_scheme": "random",
        "time_step_max": 0.1, "time_step_min": 0.001, "time_step_rank": 256, "time_step_scale": 1.0,
        "torch_dtype": "float16", "transformers_version": "4.45.0.dev0", "use_bias": False,
        "use_cache": True, "use_conv_bias": True, "use_mambapy": False, "vocab_size": 65024,
    }

DTYPE_SIZE = {"F32": 4, "F16": 2, "U8": 1}

class ShardWriter:
    """Collects (name, dtype, shape, bytes) and writes safetensors shards of ~max_bytes."""
    def __init__(self, folder, max_bytes):
        self.folder, self.max_bytes = folder, max_bytes
        self.shards, self.current, self.size = [], [], 0

    def add(self, name, dtype, shape, data):
        if self.current and self.size + len(data) > self.max_bytes:
            self.flush()
        self.current.append((name, dtype, list(shape), data))
        self.size += len(data)

    def flush(self):
        if self.current:
            self.shards.append(self.current)
            self.current, self.size = [], 0

    def write(self):
        self.flush()
        weight_map, total = {}, 0
        for i, tensors in enumerate(self.shards):
            fname = f"model-{i + 1:05d}-of-{len(self.shards):05d}.safetensors"
            # as the safetensors library does: larger dtypes first, then by name, so every
            # tensor stays aligned to its element size
            tensors.sort(key=lambda t: (-DTYPE_SIZE[t[1]], t[0]))
            header, offset = {"__metadata__": {"format": "pt"}}, 0
            for name, dtype, shape, data in tensors:
                header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
                offset += len(data)
                weight_map[name] = fname
            raw = json.dumps(header, separators=(",", ":")).encode()
            raw += b" " * (-len(raw) % 8)
            with open(os.path.join(self.folder, fname), "wb") as f:
                f.write(struct.pack("<Q", len(raw)))
                f.write(raw)
                for _, _, _, data in tensors:
                    f.write(data)
            total += offset
        with open(os.path.join(self.folder, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=64)
    ap.add_argument("--shard-gb", type=float, default=2.0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(0)
    H, D, N, R, K, V = 4096, 8192, 16, 256, 4, 65024
    w = ShardWriter(args.out, int(args.shard_gb * 1e9))

    def f16(name, array):
        w.add(name, "F16", array.shape, array.astype(np.float16).tobytes())

    def fp4(name, rows, cols, scale):
        numel, bs = rows * cols, 64
        w.add(name, "U8", (numel // 2, 1), rng.integers(0, 256, numel // 2, dtype=np.uint8).tobytes())
        absmax = (scale * (0.5 + rng.random(numel // bs, dtype=np.float32))).astype(np.float32)
        w.add(name + ".absmax", "F32", absmax.shape, absmax.tobytes())
        w.add(name + ".quant_map", "F32", (16,), FP4_MAP.tobytes())
        state = json.dumps({"quant_type": "fp4", "blocksize": bs, "dtype": "float16", "shape": [rows, cols]}).encode()
        w.add(name + ".quant_state.bitsandbytes__fp4", "U8", (len(state),), state)

    f16("backbone.embeddings.weight", rng.standard_normal((V, H), np.float32) * 0.5)
    for i in range(args.layers):
        p = f"backbone.layers.{i}."
        f16(p + "norm.weight", np.ones(H, np.float32))
        fp4(p + "mixer.in_proj.weight", 2 * D, H, 1.5 / np.sqrt(H))
        f16(p + "mixer.conv1d.weight", rng.standard_normal((D, 1, K), np.float32) * 0.3)
        f16(p + "mixer.conv1d.bias", rng.standard_normal(D, np.float32) * 0.1)
        fp4(p + "mixer.x_proj.weight", R + 2 * N, D, 1.5 / np.sqrt(D))
        fp4(p + "mixer.dt_proj.weight", D, R, 0.5 / np.sqrt(R))
        f16(p + "mixer.dt_proj.bias", np.log(np.expm1(rng.uniform(0.001, 0.1, D))).astype(np.float32))
        f16(p + "mixer.A_log", np.log(np.tile(np.arange(1, N + 1, dtype=np.float32), (D, 1))))
        f16(p + "mixer.D", np.ones(D, np.float32))
        fp4(p + "mixer.out_proj.weight", H, D, 0.5 / np.sqrt(D))
        print(f"layer {i + 1}/{args.layers}", end="\r", flush=True)
    f16("backbone.norm_f.weight", np.ones(H, np.float32))
    f16("lm_head.weight", rng.standard_normal((V, H), np.float32) * (2 / np.sqrt(H)))
    w.write()
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config(args.layers), f, indent=2)
    print(f"\nwrote {args.out}")

if __name__ == "__main__":
    main()

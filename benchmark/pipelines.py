"""Loading generators: any diffusers text-to-image pipeline, and pixel-space (class-conditional) DDPM/DDIM UNets.

Text-to-image models (Stable Diffusion 1.x/2.x, SDXL, PixArt, Sana, SD3 fine-tunes, RoentGen-like) load through
``AutoPipelineForText2Image`` (falling back to ``DiffusionPipeline``) from a local folder or a hub id, so no model
needs code of its own. Pixel-space models are a ``UNet2DModel`` plus a scheduler; with class embeddings
(``num_class_embeds``) they are run by :class:`ClassConditionalPipeline`, which takes one class label per image.
Every pipeline is called with one ``torch.Generator`` per image, so an image depends only on its own seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline, UNet2DModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from benchmark.data import DataError

TEXT_TO_IMAGE = "text-to-image"
CLASS_CONDITIONAL = "class-conditional"
UNCONDITIONAL = "unconditional"
PIXEL_PIPELINES = {"DDPMPipeline", "DDIMPipeline", "ClassConditionalPipeline"}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class ClassConditionalPipeline(DiffusionPipeline):
    """Pixel-space diffusion with a ``UNet2DModel`` (optionally class-conditional) and any diffusers scheduler.

    ``__call__`` returns images as float arrays ``(N, H, W, C)`` in [0, 1] (``output_type="np"``). Noise, and the
    scheduler's per-step noise, are drawn with one generator per image.
    """

    model_cpu_offload_seq = "unet"

    def __init__(self, unet: UNet2DModel, scheduler: SchedulerMixin):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    @property
    def is_class_conditional(self) -> bool:
        """True when the UNet has a class embedding (``num_class_embeds`` set)."""
        return bool(self.unet.config.get("num_class_embeds"))

    @torch.no_grad()
    def __call__(
        self,
        class_labels: Sequence[int] | None = None,
        batch_size: int | None = None,
        generator: list[torch.Generator] | torch.Generator | None = None,
        num_inference_steps: int = 50,
        height: int | None = None,
        width: int | None = None,
        output_type: str = "np",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        if self.is_class_conditional:
            if class_labels is None:
                raise ValueError("this UNet is class-conditional: give one class label per image")
            n_classes = int(self.unet.config.num_class_embeds)
            bad = [c for c in class_labels if not 0 <= int(c) < n_classes]
            if bad:
                raise ValueError(f"class label {bad[0]} outside the UNet's {n_classes} classes")
            batch_size = len(class_labels)
        elif batch_size is None:
            batch_size = len(generator) if isinstance(generator, list) else 1
        sample = self.unet.config.sample_size
        default_h, default_w = (sample, sample) if isinstance(sample, int) else tuple(sample)
        shape = (batch_size, self.unet.config.in_channels, height or default_h, width or default_w)
        device = self._execution_device
        image = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
        labels = None
        if self.is_class_conditional:
            labels = torch.tensor([int(c) for c in class_labels], device=device, dtype=torch.long)
        self.scheduler.set_timesteps(num_inference_steps)
        for t in self.progress_bar(self.scheduler.timesteps):
            model_output = self.unet(image, t, class_labels=labels).sample
            image = self.scheduler.step(model_output, t, image, generator=generator).prev_sample
        image = (image.float() / 2 + 0.5).clamp(0, 1)
        if output_type == "pt":
            images: Any = image
        else:
            images = image.cpu().permute(0, 2, 3, 1).numpy()
            if output_type == "pil":
                images = self.numpy_to_pil(images)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)


@dataclass
class LoadedGenerator:
    """A ready pipeline, what kind it is, and facts for the manifest."""

    pipeline: DiffusionPipeline
    kind: str
    model: str
    revision: str | None
    pipeline_class: str
    tokenizers: list[Any]

    @property
    def token_limit(self) -> int | None:
        """The smallest ``model_max_length`` among the pipeline's tokenizers (None without one)."""
        limits = [int(t.model_max_length) for t in self.tokenizers if t.model_max_length < 1_000_000]
        return min(limits) if limits else None

    def count_tokens(self, prompt: str) -> int:
        """Tokens of ``prompt`` (with special tokens) for the tokenizer with the smallest limit, uncut."""
        limited = [t for t in self.tokenizers if t.model_max_length < 1_000_000]
        tokenizer = min(limited, key=lambda t: t.model_max_length) if limited else self.tokenizers[0]
        return len(tokenizer(prompt, truncation=False, add_special_tokens=True)["input_ids"])


def read_model_index(model: str, revision: str | None = None) -> dict[str, Any]:
    """The pipeline's ``model_index.json`` from a local folder or the hub; clear errors when it is not one."""
    path = Path(model)
    looks_local = path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1
    if looks_local:
        if not path.is_dir():
            raise DataError(f"model {model!r} not found: no such folder (give a diffusers folder or a hub id)")
        if not (path / "model_index.json").is_file():
            raise DataError(f"{path}: not a diffusers pipeline folder (no model_index.json); save the model with "
                            "pipeline.save_pretrained(folder)")
    try:
        config = DiffusionPipeline.load_config(model, revision=revision)
    except OSError as exc:
        raise DataError(f"model {model!r} (revision {revision or 'default'}) could not be loaded: {exc}") from exc
    return dict(config)


def model_kind(index: dict[str, Any], unet: UNet2DModel | None = None) -> str:
    """``text-to-image``, ``class-conditional`` or ``unconditional`` from a model index (and its UNet)."""
    class_name = index.get("_class_name", "")
    components = {k for k, v in index.items() if not k.startswith("_") and isinstance(v, list | tuple)}
    if class_name in PIXEL_PIPELINES or components <= {"unet", "scheduler"}:
        if unet is not None and unet.config.get("num_class_embeds"):
            return CLASS_CONDITIONAL
        return UNCONDITIONAL if unet is not None else CLASS_CONDITIONAL
    return TEXT_TO_IMAGE


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``fp32`` / ``fp16`` / ``bf16`` -> torch dtype; half precisions only on a GPU."""
    if name not in DTYPES:
        raise DataError(f"unknown dtype {name!r}; use one of {', '.join(DTYPES)}")
    if name != "fp32" and device.type != "cuda":
        raise DataError(f"--dtype {name} needs a GPU; this process runs on {device.type} (use --dtype fp32)")
    return DTYPES[name]


def load_generator(
    model: str,
    *,
    revision: str | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    scheduler: str | None = None,
    lora: str | None = None,
    disable_safety_checker: bool = True,
) -> LoadedGenerator:
    """Load ``model`` (folder or hub id) onto ``device``; optional scheduler class override and LoRA weights.

    The safety checker of Stable Diffusion pipelines is disabled by default: it blanks medical images.
    """
    index = read_model_index(model, revision)
    class_name = index.get("_class_name", "")
    kind = model_kind(index)
    if kind == TEXT_TO_IMAGE:
        from diffusers import AutoPipelineForText2Image

        kwargs: dict[str, Any] = {"revision": revision, "dtype": dtype}
        if disable_safety_checker and "safety_checker" in index:
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        try:
            pipe = AutoPipelineForText2Image.from_pretrained(model, **kwargs)
        except ValueError as exc:
            if "AutoPipeline" not in str(exc):
                raise
            pipe = DiffusionPipeline.from_pretrained(model, **kwargs)
    else:
        if "unet" not in index or "scheduler" not in index:
            raise DataError(f"model {model!r}: a pixel-space pipeline needs 'unet' and 'scheduler' components, "
                            f"found {', '.join(k for k in index if not k.startswith('_'))}")
        unet = UNet2DModel.from_pretrained(model, subfolder="unet", revision=revision, dtype=dtype)
        scheduler_class = _scheduler_class(index["scheduler"][1])
        base_scheduler = scheduler_class.from_pretrained(model, subfolder="scheduler", revision=revision)
        pipe = ClassConditionalPipeline(unet=unet, scheduler=base_scheduler)
        kind = model_kind(index, unet)
    if scheduler:
        pipe.scheduler = _scheduler_class(scheduler).from_config(pipe.scheduler.config)
    if lora:
        if kind != TEXT_TO_IMAGE or not hasattr(pipe, "load_lora_weights"):
            raise DataError(f"--lora: {type(pipe).__name__} does not take LoRA weights")
        pipe.load_lora_weights(lora)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    tokenizers = [getattr(pipe, name) for name in ("tokenizer", "tokenizer_2", "tokenizer_3")
                  if getattr(pipe, name, None) is not None]
    return LoadedGenerator(pipe, kind, model, revision, class_name or type(pipe).__name__, tokenizers)


def _scheduler_class(name: str) -> type:
    import diffusers

    scheduler = getattr(diffusers, name, None)
    if scheduler is None or not isinstance(scheduler, type) or not issubclass(scheduler, SchedulerMixin):
        raise DataError(f"unknown scheduler {name!r} (use a diffusers scheduler class, e.g. DDIMScheduler)")
    return scheduler


def run_batch(
    loaded: LoadedGenerator,
    *,
    prompts: Sequence[str],
    class_labels: Sequence[int] | None,
    seeds: Sequence[int],
    steps: int,
    guidance: float | None,
    height: int | None,
    width: int | None,
    negative_prompt: str | None,
) -> np.ndarray:
    """Generate one image per seed; returns uint8 ``(N, H, W, C)``. Each image uses its own CPU generator."""
    generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
    if loaded.kind == TEXT_TO_IMAGE:
        kwargs: dict[str, Any] = {"prompt": list(prompts), "num_inference_steps": steps, "generator": generators,
                                  "height": height, "width": width, "output_type": "np"}
        if guidance is not None:
            kwargs["guidance_scale"] = guidance
        if negative_prompt:
            kwargs["negative_prompt"] = [negative_prompt] * len(prompts)
        images = loaded.pipeline(**kwargs).images
    else:
        images = loaded.pipeline(
            class_labels=list(class_labels) if loaded.kind == CLASS_CONDITIONAL else None,
            batch_size=len(seeds), generator=generators, num_inference_steps=steps,
            height=height, width=width, output_type="np",
        ).images
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[..., None]
    if not np.isfinite(images).all():
        raise RuntimeError("the pipeline produced NaN/inf pixels (try fp32 or bf16 instead of fp16)")
    return np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)

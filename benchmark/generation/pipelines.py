"""Loading generators: any diffusers text-to-image pipeline, and pixel-space (class-conditional) DDPM/DDIM UNets.

Text-to-image models (Stable Diffusion 1.x/2.x, SDXL, PixArt, Sana, SD3 fine-tunes, RoentGen-like) load through
``AutoPipelineForText2Image`` (falling back to ``DiffusionPipeline``) from a local folder or a hub id, so no model
needs code of its own. Pixel-space models are a ``UNet2DModel`` plus a scheduler; with class embeddings
(``num_class_embeds``) they are run by :class:`ClassConditionalPipeline`, which takes one class label per image
and applies classifier-free guidance when the UNet was trained with a null class (``"null_class": <index>`` in
``model_index.json``). Every pipeline is called with one ``torch.Generator`` per image, so an image depends only on
its own seed. :func:`resolve_options` decides, from the pipeline's own ``__call__`` signature, which settings a
pipeline really applies (and refuses the rest); :class:`TextEncoderLimit` says where each text encoder cuts a prompt.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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

    With ``guidance_scale`` other than 1 and a ``null_class`` (the class embedding the UNet was trained on for
    dropped labels; by convention the last of ``num_class_embeds = n_classes + 1``), each step runs classifier-free
    guidance: ``uncond + guidance_scale * (cond - uncond)``. At 1 the UNet runs once per step, conditioned only.
    """

    model_cpu_offload_seq = "unet"

    def __init__(self, unet: UNet2DModel, scheduler: SchedulerMixin, null_class: int | None = None):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        n_embeds = unet.config.get("num_class_embeds")
        if null_class is not None and (not n_embeds or not 0 <= int(null_class) < int(n_embeds)):
            raise ValueError(f"null_class {null_class} is not one of the UNet's class embeddings "
                             f"(num_class_embeds {n_embeds})")
        self.register_to_config(null_class=None if null_class is None else int(null_class))

    @property
    def is_class_conditional(self) -> bool:
        """True when the UNet has a class embedding (``num_class_embeds`` set)."""
        return bool(self.unet.config.get("num_class_embeds"))

    @property
    def class_indices(self) -> list[int]:
        """The class labels an image may be asked for: every class embedding but the null class."""
        if not self.is_class_conditional:
            return []
        return [c for c in range(int(self.unet.config.num_class_embeds)) if c != self.config.null_class]

    @torch.no_grad()
    def __call__(
        self,
        class_labels: Sequence[int] | None = None,
        batch_size: int | None = None,
        generator: list[torch.Generator] | torch.Generator | None = None,
        num_inference_steps: int = 50,
        height: int | None = None,
        width: int | None = None,
        guidance_scale: float = 1.0,
        output_type: str = "np",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        null_class = self.config.null_class
        guided = float(guidance_scale) != 1.0
        if guided and (not self.is_class_conditional or null_class is None):
            raise ValueError("guidance_scale other than 1 needs a class-conditional UNet trained with a null class "
                             "(model_index.json 'null_class')")
        if self.is_class_conditional:
            if class_labels is None:
                raise ValueError("this UNet is class-conditional: give one class label per image")
            allowed = set(self.class_indices)
            bad = [c for c in class_labels if int(c) not in allowed]
            if bad:
                raise ValueError(f"class label {bad[0]} outside the UNet's classes {min(allowed)}..{max(allowed)}")
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
        null = torch.full_like(labels, int(null_class)) if guided else None
        for t in self.progress_bar(self.scheduler.timesteps):
            if guided:
                both = self.unet(torch.cat([image, image]), t, class_labels=torch.cat([labels, null])).sample
                cond, uncond = both.chunk(2)
                model_output = uncond + float(guidance_scale) * (cond - uncond)
            else:
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


NO_LIMIT = 10**20  # transformers' "no limit" model_max_length is 1e30 (VERY_LARGE_INTEGER); real limits are small


@dataclass
class TextEncoderLimit:
    """Where one text encoder cuts a prompt, as its pipeline tokenizes it.

    ``limit`` counts every token the pipeline feeds the encoder (special tokens and ``prefix`` included) and is
    None when nothing cuts; ``source`` says where it comes from (``max_sequence_length``, the tokenizer's
    ``model_max_length`` or the text encoder's ``max_position_embeddings``). ``prefix`` is text the pipeline puts
    before every prompt (Lumina2's system prompt, Sana's complex human instruction), which shares the budget.
    """

    component: str
    tokenizer: Any
    limit: int | None
    source: str
    prefix: str = ""
    preprocess: Callable[[str], str] | None = None

    @property
    def prefix_tokens(self) -> int:
        """Tokens of the prefix alone (with special tokens); 0 without one."""
        return len(self.tokenizer(self.prefix, add_special_tokens=True)["input_ids"]) if self.prefix else 0

    def count(self, prompt: str) -> int:
        """Tokens the pipeline would feed this encoder for ``prompt`` before cutting (prefix included)."""
        text = self.preprocess(prompt) if self.preprocess else prompt
        return len(self.tokenizer(self.prefix + text, truncation=False, add_special_tokens=True)["input_ids"])


@dataclass
class LoadedGenerator:
    """A ready pipeline, what kind it is, and facts for the manifest."""

    pipeline: DiffusionPipeline
    kind: str
    model: str
    revision: str | None
    pipeline_class: str
    tokenizers: list[Any]
    last_generated_size: tuple[int, int] | None = field(default=None, repr=False)

    @property
    def call_parameters(self) -> dict[str, inspect.Parameter]:
        """The parameters of the pipeline's ``__call__`` (its defaults are the values used when none is given)."""
        return dict(inspect.signature(type(self.pipeline).__call__).parameters)

    def takes(self, name: str) -> bool:
        """Whether the pipeline's ``__call__`` has a parameter ``name``."""
        return name in self.call_parameters

    def default(self, name: str) -> Any:
        """The default of ``__call__`` parameter ``name`` (None when it has none or no such parameter)."""
        parameter = self.call_parameters.get(name)
        if parameter is None or parameter.default is inspect.Parameter.empty:
            return None
        return parameter.default

    @property
    def class_indices(self) -> list[int]:
        """Class labels a class-conditional model accepts (empty for other kinds)."""
        return list(getattr(self.pipeline, "class_indices", []))

    @property
    def null_class(self) -> int | None:
        """The null class of a class-conditional UNet trained for classifier-free guidance, else None."""
        return self.pipeline.config.get("null_class") if self.kind == CLASS_CONDITIONAL else None

    def encoder_limits(self, max_sequence_length: int | None = None) -> list[TextEncoderLimit]:
        """Per text encoder, the limit the pipeline really applies (``max_sequence_length`` overrides its default).

        Pipelines whose ``__call__`` takes ``max_sequence_length`` (SD3, Flux, PixArt, Sana, Lumina2) cut their
        T5/Gemma encoder there; CLIP encoders, and every encoder of other pipelines (Stable Diffusion, SDXL, BERT
        RadEdit-like), cut at the tokenizer's ``model_max_length``, or the encoder's positions when the tokenizer
        has no limit.
        """
        pipe = self.pipeline
        length = max_sequence_length if max_sequence_length is not None else self.default("max_sequence_length")
        limits = []
        for suffix in ("", "_2", "_3"):
            tokenizer = getattr(pipe, f"tokenizer{suffix}", None)
            if tokenizer is None:
                continue
            encoder = getattr(pipe, f"text_encoder{suffix}", None)
            positions = getattr(getattr(encoder, "config", None), "max_position_embeddings", None)
            is_clip = type(encoder).__name__.startswith("CLIP")
            prefix, preprocess = "", None
            if length is not None and not is_clip:
                limit, source = int(length), "max_sequence_length"
                if self.takes("system_prompt") and getattr(pipe, "system_prompt", None):  # Lumina2
                    prefix = f"{pipe.system_prompt} <Prompt Start> "
                instruction = self.default("complex_human_instruction")
                if instruction:  # Sana: the instruction is prepended and the budget widened by its tokens - 2
                    prefix = "\n".join(instruction)
                    limit += len(tokenizer.encode(prefix)) - 2
                if hasattr(pipe, "_text_preprocessing"):  # PixArt, Sana: lower-case and strip (clean_caption)
                    clean = bool(self.default("clean_caption"))
                    preprocess = lambda p, _clean=clean: pipe._text_preprocessing(p, clean_caption=_clean)[0]  # noqa: E731
            elif int(tokenizer.model_max_length) < NO_LIMIT:
                limit, source = int(tokenizer.model_max_length), "model_max_length"
            elif positions:
                limit, source = int(positions), "max_position_embeddings"
            else:
                limit, source = None, "none"
            limits.append(TextEncoderLimit(f"tokenizer{suffix}", tokenizer, limit, source, prefix, preprocess))
        return limits


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
    try:
        return _load_generator(model, index, revision=revision, dtype=dtype, device=device, scheduler=scheduler,
                               lora=lora, disable_safety_checker=disable_safety_checker)
    except OSError as exc:  # a component's weights file missing, unreadable or cut off
        raise DataError(f"model {model!r}: cannot load its weights ({str(exc).splitlines()[0]}); check that every "
                        "component folder holds its weights file (e.g. unet/diffusion_pytorch_model.safetensors) "
                        "and that the download finished") from exc


def _load_generator(model: str, index: dict[str, Any], *, revision: str | None, dtype: torch.dtype,
                    device: torch.device | str, scheduler: str | None, lora: str | None,
                    disable_safety_checker: bool) -> LoadedGenerator:
    """The body of :func:`load_generator`."""
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
        null_class = index.get("null_class")
        try:
            pipe = ClassConditionalPipeline(unet=unet, scheduler=base_scheduler, null_class=null_class)
        except ValueError as exc:
            raise DataError(f"model {model!r}: model_index.json: {exc}") from exc
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


@dataclass
class CallOptions:
    """What a run asks the pipeline for, resolved against what the pipeline really does.

    ``kwargs`` go to every ``__call__``; ``record`` is what ``manifest.json`` says (only settings that shape the
    pixels, with the values used: a signature default when the option was not given).
    """

    kwargs: dict[str, Any]
    record: dict[str, Any]


def resolve_options(
    loaded: LoadedGenerator,
    *,
    guidance: float | None = None,
    negative_prompt: str | None = None,
    true_cfg_scale: float | None = None,
    max_sequence_length: int | None = None,
    resolution_binning: bool = True,
) -> CallOptions:
    """Apply each option the pipeline uses; stop with a :class:`DataError` for one it would silently ignore.

    Text-to-image: ``guidance_scale`` (classifier-free guidance above 1; Flux: the distilled guidance embedding,
    so only when ``guidance_embeds``), ``negative_prompt`` (needs guidance above 1, or for Flux
    ``true_cfg_scale`` above 1), ``max_sequence_length`` and ``use_resolution_binning`` where ``__call__`` takes
    them. Class-conditional: guidance only with a null class; no negative prompt. Unconditional: neither.
    """
    pipe_name = type(loaded.pipeline).__name__
    kwargs: dict[str, Any] = {}
    record: dict[str, Any] = {}

    def refuse(option: str, why: str) -> None:
        raise DataError(f"{option}: {pipe_name} ({loaded.kind}) {why}")

    if max_sequence_length is not None and not loaded.takes("max_sequence_length"):
        refuse("--max-sequence-length", "takes no max_sequence_length (its tokenizers cut at their own limit)")
    if max_sequence_length is not None and max_sequence_length < 1:
        raise DataError(f"--max-sequence-length must be at least 1, got {max_sequence_length}")
    if not resolution_binning and not loaded.takes("use_resolution_binning"):
        refuse("--no-resolution-binning", "has no resolution binning (it generates at the requested size)")
    if true_cfg_scale is not None and not loaded.takes("true_cfg_scale"):
        refuse("--true-cfg-scale", "takes no true_cfg_scale (use --guidance)")

    if loaded.kind != TEXT_TO_IMAGE:
        if negative_prompt:
            refuse("--negative-prompt", "has no text conditioning, so a negative prompt cannot be applied")
        used = 1.0 if guidance is None else float(guidance)
        if used != 1.0 and loaded.null_class is None:
            what = ("has no null class (classifier-free guidance needs a UNet trained with dropped labels, "
                    "recorded as \"null_class\": <index> in model_index.json)" if loaded.kind == CLASS_CONDITIONAL
                    else "is unconditional: there is nothing to guide")
            refuse("--guidance", what)
        if used != 1.0:
            kwargs["guidance_scale"] = used
        record.update(guidance=used, guidance_mode=(
            f"classifier-free (null class {loaded.null_class})" if used != 1.0 else "none"), negative_prompt=None)
        return CallOptions(kwargs, record)

    default_guidance = loaded.default("guidance_scale")
    if loaded.takes("guidance_scale") and (guidance is not None or default_guidance is not None):
        distilled = loaded.takes("true_cfg_scale")  # Flux: guidance_scale feeds the guidance embedding
        transformer_config = getattr(getattr(loaded.pipeline, "transformer", None), "config", {})
        used = float(default_guidance if guidance is None else guidance)
        if distilled and not transformer_config.get("guidance_embeds", True):
            if guidance is not None:
                refuse("--guidance", "is not guidance-distilled (guidance_embeds false): guidance_scale does "
                       "nothing; use --true-cfg-scale with --negative-prompt")
            record.update(guidance=None, guidance_mode="none (no guidance embedding)")
        else:
            if not distilled and used < 1:
                refuse("--guidance", f"turns classifier-free guidance off at any scale up to 1, so {used} would "
                       "give the images of 1; give 1 (no guidance) or a scale above 1")
            kwargs["guidance_scale"] = used
            mode = "distilled (guidance embedding)" if distilled else (
                "classifier-free" if used > 1 else "none (guidance_scale 1)")
            record.update(guidance=used, guidance_mode=mode)
    elif guidance is not None:
        refuse("--guidance", "takes no guidance_scale")
    else:
        record.update(guidance=None, guidance_mode="none")

    if loaded.takes("true_cfg_scale"):
        true_cfg = float(loaded.default("true_cfg_scale") if true_cfg_scale is None else true_cfg_scale)
        if negative_prompt and true_cfg <= 1:
            refuse("--negative-prompt", f"applies a negative prompt only with true classifier-free guidance: give "
                   f"--true-cfg-scale above 1 (now {true_cfg})")
        if true_cfg > 1 and not negative_prompt:
            refuse("--true-cfg-scale", "applies true classifier-free guidance only against a --negative-prompt")
        kwargs["true_cfg_scale"] = true_cfg
        record["true_cfg_scale"] = true_cfg
    if negative_prompt:
        if not loaded.takes("negative_prompt"):
            refuse("--negative-prompt", "takes no negative_prompt")
        if not loaded.takes("true_cfg_scale") and not (record.get("guidance") or 0) > 1:
            refuse("--negative-prompt", f"uses the negative prompt only with classifier-free guidance: give "
                   f"--guidance above 1 (now {record.get('guidance')})")
        kwargs["negative_prompt"] = negative_prompt
    record["negative_prompt"] = negative_prompt or None
    if loaded.takes("max_sequence_length"):
        used_length = int(loaded.default("max_sequence_length") if max_sequence_length is None
                          else max_sequence_length)
        kwargs["max_sequence_length"] = used_length
        record["max_sequence_length"] = used_length
    if loaded.takes("use_resolution_binning"):
        kwargs["use_resolution_binning"] = bool(resolution_binning)
        record["resolution_binning"] = bool(resolution_binning)
    return CallOptions(kwargs, record)


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
    options: CallOptions | None = None,
) -> np.ndarray:
    """Generate one image per seed; returns uint8 ``(N, H, W, C)``. Each image uses its own CPU generator.

    ``options`` (from :func:`resolve_options`) replaces ``guidance`` and ``negative_prompt`` when given. The size
    the model generated at (before a resolution-binning resize) is left in ``loaded.last_generated_size``.
    """
    if options is None:
        options = resolve_options(loaded, guidance=guidance, negative_prompt=negative_prompt)
    generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
    extra = dict(options.kwargs)
    binned: list[tuple[int, int]] = []
    processor = getattr(loaded.pipeline, "image_processor", None)
    classify = getattr(processor, "classify_height_width_bin", None)
    wrapped = classify is not None and bool(extra.get("use_resolution_binning"))
    if wrapped:  # PixArt/Sana pick the generated size here, then resize to the requested one
        def recording(height: int, width: int, ratios: dict) -> tuple[int, int]:
            size = classify(height, width, ratios)
            binned.append((int(size[0]), int(size[1])))
            return size

        processor.classify_height_width_bin = recording
    try:
        if loaded.kind == TEXT_TO_IMAGE:
            if "negative_prompt" in extra:
                extra["negative_prompt"] = [extra["negative_prompt"]] * len(prompts)
            images = loaded.pipeline(prompt=list(prompts), num_inference_steps=steps, generator=generators,
                                     height=height, width=width, output_type="np", **extra).images
        else:
            images = loaded.pipeline(
                class_labels=list(class_labels) if loaded.kind == CLASS_CONDITIONAL else None,
                batch_size=len(seeds), generator=generators, num_inference_steps=steps,
                height=height, width=width, output_type="np", **extra,
            ).images
    finally:
        if wrapped:
            del processor.classify_height_width_bin  # the class's own (static) method again
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[..., None]
    loaded.last_generated_size = binned[-1] if binned else (int(images.shape[1]), int(images.shape[2]))
    if not np.isfinite(images).all():
        raise RuntimeError("the pipeline produced NaN/inf pixels (try fp32 or bf16 instead of fp16)")
    return np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)

"""Generation throughput: the harness's generation (``benchmark.generation.generate``) against the plain diffusers call.

Builds a Stable-Diffusion-shaped pipeline from config and saves it (``--unet sd15``: SD-1.5's UNet, VAE and CLIP
text-encoder sizes; ``--unet tiny``: the demo's tiny one). Then, in one process, with the same settings (prompts,
steps, guidance, size, batch size, one CPU generator per image, torch thread count):

1. **plain**: ``DiffusionPipeline.from_pretrained`` and ``pipe(prompt=[...], generator=[...], ...)`` per batch, each
   image saved as PNG -- what a user's own script does;
2. **harness**: :func:`benchmark.generation.generate.generate` (prompt CSV in; plan, token report, PNGs, part files,
   ``synthetic.csv`` and ``manifest.json`` out).

Each is run for ``--images`` and for twice as many; the steady-state rate is the extra images over the extra time,
so model loading (the same library call in both) is taken out. The ratio harness / plain is the goal (>= 0.95).
On CPU the harness pins one torch thread per process (CPU results depend on the thread count), so the plain call is
timed at one thread too, and at the machine's default thread count for reference. Then ``--processes`` (default 2)
processes through ``accelerate launch`` against one process, same job, wall time including start-up, and the
steady-state rate from the same two job sizes. On a GPU ``--dtypes fp16`` / ``bf16`` add rows.

    python benchmarks/generation_throughput.py                                   # CPU: tiny model, 64 px
    python benchmarks/generation_throughput.py --unet sd15 --size 512 --steps 20 --dtypes fp32,fp16   # one GPU

Not run by the test suite.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars of both paths (tqdm reads it at each bar)
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from benchmark.generation.generate import GenerationConfig, generate

REPO_ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["PA chest x-ray showing soft tissue mass in the right upper lobe", "PA chest x-ray, normal study",
           "PA chest x-ray showing cardiomegaly", "PA chest x-ray showing a small left pleural effusion"]


def build_sd15_sized(folder: Path) -> Path:
    """An untrained pipeline with SD-1.5's component sizes (UNet ~860M parameters)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from benchmark.demo.models import train_clip_tokenizer

    tokenizer = train_clip_tokenizer(PROMPTS * 3, folder / "_tok")
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072,
                                                num_attention_heads=12, num_hidden_layers=12,
                                                max_position_embeddings=77, projection_dim=768))
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)  # the defaults are SD-1.5's UNet
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), latent_channels=4, sample_size=512,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        layers_per_block=2)
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                              steps_offset=1)
    StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                            safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(folder / "pipeline")
    return folder / "pipeline"


def prompts_csv(folder: Path, n: int) -> Path:
    path = folder / f"prompts_{n}.csv"
    pd.DataFrame({"prompt": [PROMPTS[i % len(PROMPTS)] for i in range(n)]}).to_csv(path, index=False)
    return path


def plain_seconds(model: Path, n: int, args: argparse.Namespace, dtype: torch.dtype, device: torch.device,
                  out: Path) -> float:
    """Wall time of loading the pipeline and generating + saving ``n`` images with the plain diffusers call."""
    from diffusers import DiffusionPipeline

    started = time.perf_counter()
    pipe = DiffusionPipeline.from_pretrained(str(model), torch_dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    out.mkdir(parents=True, exist_ok=True)
    for first in range(0, n, args.batch_size):
        rows = range(first, min(n, first + args.batch_size))
        images = pipe(prompt=[PROMPTS[i % len(PROMPTS)] for i in rows], num_inference_steps=args.steps,
                      guidance_scale=args.guidance, height=args.size, width=args.size,
                      generator=[torch.Generator("cpu").manual_seed(i) for i in rows]).images
        for i, image in zip(rows, images, strict=True):
            image.convert("L").save(out / f"{i}.png")
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def harness_config(model: Path, csv: Path, out: Path, args: argparse.Namespace, dtype_name: str) -> GenerationConfig:
    return GenerationConfig(model=str(model), prompts=str(csv), out=str(out), steps=args.steps,
                            guidance=args.guidance, height=args.size, width=args.size, batch_size=args.batch_size,
                            dtype=dtype_name)


def harness_seconds(model: Path, csv: Path, out: Path, args: argparse.Namespace, dtype_name: str) -> float:
    started = time.perf_counter()
    generate(harness_config(model, csv, out, args, dtype_name))
    return time.perf_counter() - started


def launched_seconds(model: Path, csv: Path, out: Path, args: argparse.Namespace, processes: int) -> float:
    """Wall time of ``accelerate launch --num_processes N -m benchmark.generation.generate`` (start-up included)."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    if processes > 1:
        command.append("--multi_gpu")
    command += ["-m", "benchmark.generation.generate", "--model", str(model), "--prompts", str(csv), "--out", str(out),
                "--steps", str(args.steps), "--guidance", str(args.guidance), "--height", str(args.size),
                "--width", str(args.size), "--batch-size", str(args.batch_size)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def steady(run, n: int) -> tuple[float, float]:
    """(steady-state images/s from runs of ``n`` and ``2n`` images, seconds of the ``n``-image run)."""
    small = run(n)
    large = run(2 * n)
    if large <= small:
        raise SystemExit(f"the {2 * n}-image job took no longer than the {n}-image one ({large:.2f} s vs "
                         f"{small:.2f} s): too small to measure; raise --images")
    return n / (large - small), small


def main(argv: list[str] | None = None) -> int:
    gpu = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unet", choices=("tiny", "sd15"), default="sd15" if gpu else "tiny")
    parser.add_argument("--size", type=int, default=512 if gpu else 64, help="image height and width")
    parser.add_argument("--dtypes", default="fp32,fp16" if gpu else "fp32")
    parser.add_argument("--images", type=int, default=32 if gpu else 16, help="the smaller job; the larger is 2x")
    parser.add_argument("--batch-size", type=int, default=8 if gpu else 4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--processes", type=int, default=0 if gpu else 2,
                        help="also time N processes against 1 through accelerate launch (0: skip)")
    args = parser.parse_args(argv)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
    device = torch.device("cuda" if gpu else "cpu")
    default_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.unet == "sd15":
            model = build_sd15_sized(tmp)
        else:
            from benchmark.demo.models import build_text_to_image

            model = build_text_to_image(tmp / "pipeline", PROMPTS * 3, image_size=args.size)
        csvs = {n: prompts_csv(tmp, n) for n in (args.images, 2 * args.images)}
        name = torch.cuda.get_device_name() if gpu else f"CPU, {default_threads} threads by default"
        print(f"{args.unet} Stable-Diffusion-shaped pipeline, {args.size} px, {args.steps} steps, guidance "
              f"{args.guidance}, batch {args.batch_size}, {args.images} and {2 * args.images} images, on {name}")
        print(f"{'path':<44} {'images/s':>9} {'ratio':>7} {'small job (s)':>14}")
        counter = iter(range(10**6))
        for dtype_name in args.dtypes.split(","):
            dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
            threads = 1 if not gpu else default_threads
            torch.set_num_threads(threads)
            plain, plain_small = steady(lambda n, d=dtype: plain_seconds(model, n, args, d, device,
                                                                        tmp / f"plain{next(counter)}"), args.images)
            harness, harness_small = steady(lambda n, d=dtype_name: harness_seconds(
                model, csvs[n], tmp / f"harness{next(counter)}", args, d), args.images)
            label = f"{dtype_name}, {threads} thread{'s' if threads > 1 else ''}"
            print(f"{'plain diffusers call (' + label + ')':<44} {plain:>9.2f} {1.0:>7.2f} {plain_small:>14.1f}")
            print(f"{'harness generate() (' + label + ')':<44} {harness:>9.2f} {harness / plain:>7.2f} "
                  f"{harness_small:>14.1f}")
            if not gpu and default_threads > 1:
                torch.set_num_threads(default_threads)
                wide, wide_small = steady(lambda n, d=dtype: plain_seconds(model, n, args, d, device,
                                                                          tmp / f"plain{next(counter)}"), args.images)
                print(f"{f'plain diffusers call ({dtype_name}, {default_threads} threads)':<44} {wide:>9.2f} "
                      f"{wide / plain:>7.2f} {wide_small:>14.1f}")
        torch.set_num_threads(default_threads)
        if args.processes > 1:
            one, one_small = steady(lambda n: launched_seconds(model, csvs[n], tmp / f"launch{next(counter)}", args,
                                                               1), args.images)
            many, many_small = steady(lambda n: launched_seconds(model, csvs[n], tmp / f"launch{next(counter)}",
                                                                 args, args.processes), args.images)
            print(f"{'accelerate launch, 1 process':<44} {one:>9.2f} {1.0:>7.2f} {one_small:>14.1f}")
            print(f"{f'accelerate launch, {args.processes} processes':<44} {many:>9.2f} {many / one:>7.2f} "
                  f"{many_small:>14.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

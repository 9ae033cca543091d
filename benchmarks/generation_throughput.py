"""Generation throughput (images/s) through the harness's own loading and batch code, with ratios to a baseline.

Builds a Stable-Diffusion-shaped pipeline from config (``--unet sd15``: SD-1.5's UNet, VAE and CLIP text-encoder
sizes; ``--unet tiny``: the demo's tiny one), saves it, loads it back with ``benchmark.pipelines.load_generator``
and times ``run_batch`` for each dtype and batch size. The first setting (fp32, the smallest batch) is the baseline
every other figure is divided by, measured in the same process. fp16/bf16 are only run on a GPU.

    python benchmarks/generation_throughput.py --unet sd15 --dtypes fp32,fp16 --batch-sizes 1,4,8 --steps 20
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmark.pipelines import load_generator, resolve_dtype, run_batch

PROMPT = "PA chest x-ray showing soft tissue mass in the right upper lobe"


def build_sd15_sized(folder: Path) -> Path:
    """An untrained pipeline with SD-1.5's component sizes (UNet ~860M parameters), 512 px."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from benchmark.demo_models import train_clip_tokenizer

    tokenizer = train_clip_tokenizer([PROMPT] * 10, folder / "_tok")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unet", choices=("tiny", "sd15"), default="sd15" if torch.cuda.is_available() else "tiny")
    parser.add_argument("--dtypes", default="fp32,fp16" if torch.cuda.is_available() else "fp32")
    parser.add_argument("--batch-sizes", default="1,4,8")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2, help="timed batches per setting (after one warm-up)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        if args.unet == "sd15":
            model = build_sd15_sized(Path(tmp))
        else:
            from benchmark.demo_models import build_text_to_image

            model = build_text_to_image(Path(tmp) / "pipeline", [PROMPT] * 10, image_size=64)
        print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}), "
              f"model {args.unet}, {args.steps} steps")
        baseline = None
        for dtype_name in args.dtypes.split(","):
            loaded = load_generator(str(model), dtype=resolve_dtype(dtype_name, device), device=device)
            for batch_size in (int(b) for b in args.batch_sizes.split(",")):
                def batch(seed: int, n: int = batch_size, gen=loaded) -> None:
                    run_batch(gen, prompts=[PROMPT] * n, class_labels=None, seeds=range(seed, seed + n),
                              steps=args.steps, guidance=7.5, height=None, width=None, negative_prompt=None)

                batch(0)  # warm-up
                if device.type == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
                for repeat in range(args.repeats):
                    batch(1000 * (repeat + 1))
                if device.type == "cuda":
                    torch.cuda.synchronize()
                rate = args.repeats * batch_size / (time.perf_counter() - started)
                baseline = baseline or rate
                print(f"{dtype_name:>5} batch {batch_size:>3}: {rate:8.3f} images/s "
                      f"({rate / baseline:5.2f}x baseline)")
            del loaded
            if device.type == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()

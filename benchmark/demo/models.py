"""Tiny untrained diffusers pipelines built from config, saved like real ones (for the demo and offline tests).

``build_text_to_image`` makes a Stable-Diffusion-shaped pipeline (UNet2DConditionModel, AutoencoderKL,
CLIPTextModel, a CLIP tokenizer whose BPE vocabulary is trained on the given prompts) and
``build_class_conditional`` a pixel-space ``UNet2DModel`` with class embeddings and a DDPM scheduler. Both are saved
with ``save_pretrained`` so that they load back through the same code as a real model.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch


def train_clip_tokenizer(prompts: Iterable[str], folder: str | Path, vocab_size: int = 400,
                         model_max_length: int = 77):
    """Train a small byte-pair vocabulary on ``prompts`` and return it as a ``CLIPTokenizer`` (CLIP's format)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE(unk_token="<|endoftext|>", end_of_word_suffix="</w>"))
    bpe.normalizer = normalizers.Lowercase()
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    alphabet = list("abcdefghijklmnopqrstuvwxyz0123456789.,;:-()/%'")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|startoftext|>", "<|endoftext|>"],
                                  end_of_word_suffix="</w>", initial_alphabet=alphabet, show_progress=False)
    bpe.train_from_iterator([p.lower() for p in prompts], trainer)
    with tempfile.TemporaryDirectory() as tmp:
        bpe.model.save(tmp)
        vocab = json.loads((Path(tmp) / "vocab.json").read_text())
        for ch in alphabet:  # CLIP looks every character up in its end-of-word form too
            vocab.setdefault(ch, len(vocab))
            vocab.setdefault(ch + "</w>", len(vocab))
        (folder / "vocab.json").write_text(json.dumps(vocab))
        (folder / "merges.txt").write_text((Path(tmp) / "merges.txt").read_text())
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=model_max_length)


def build_text_to_image(folder: str | Path, prompts: Iterable[str], image_size: int = 32, seed: int = 0) -> Path:
    """Save a tiny untrained Stable-Diffusion pipeline (``image_size`` px RGB) to ``folder``; returns it."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = train_clip_tokenizer(prompts, tmp)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=tokenizer.model_max_length, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, projection_dim=32))
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
                        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), norm_num_groups=8,
                        sample_size=image_size)
    unet = UNet2DConditionModel(sample_size=image_size // 2, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), norm_num_groups=8, cross_attention_dim=32,
                                attention_head_dim=8, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    scheduler = DDIMScheduler(num_train_timesteps=100, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipeline = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipeline.save_pretrained(folder)
    return folder


def build_class_conditional(folder: str | Path, num_classes: int, image_size: int = 32, seed: int = 0) -> Path:
    """Save a tiny untrained single-channel class-conditional DDPM (``image_size`` px) to ``folder``."""
    from diffusers import DDPMScheduler, UNet2DModel

    from benchmark.generation.pipelines import ClassConditionalPipeline

    folder = Path(folder)
    torch.manual_seed(seed)
    unet = UNet2DModel(sample_size=image_size, in_channels=1, out_channels=1, layers_per_block=1,
                       block_out_channels=(16, 32), norm_num_groups=8, num_class_embeds=num_classes,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    scheduler = DDPMScheduler(num_train_timesteps=100)
    ClassConditionalPipeline(unet=unet, scheduler=scheduler).save_pretrained(folder)
    return folder

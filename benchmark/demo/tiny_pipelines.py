"""Tiny untrained pipelines of every family the generation stage supports, built offline from configs.

Each ``build_<family>(folder, prompts)`` saves a pipeline with ``save_pretrained`` so that it loads back through
:func:`benchmark.generation.pipelines.load_generator` like a real checkpoint: SD 1.x / 2.x, SDXL, SD3, PixArt-Alpha
/ Sigma, Flux, Sana, Lumina2, a RadEdit-like SD2 UNet with a BERT text encoder, DDPM / DDIM, and a class-conditional
UNet trained-for-guidance layout (a null class). Tokenizers are built in-process (no download): CLIP's BPE is
trained on ``prompts``; T5 (Unigram) and BERT (WordPiece) get a word vocabulary from ``prompts`` plus every
character; the Gemma tokenizer is character-level and, like Gemma's own, has no ``model_max_length`` (transformers'
"no limit"). Every model is a few thousand parameters at 32 px, for tests.
"""

from __future__ import annotations

import string
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

CHARS = sorted(set(string.printable) - set(" \t\r\x0b\x0c"))


def _words(prompts: Iterable[str], lower: bool = True) -> list[str]:
    seen: dict[str, None] = {}
    for prompt in prompts:
        for word in (prompt.lower() if lower else prompt).split():
            seen.setdefault(word, None)
    return list(seen)


def t5_tokenizer(prompts: Iterable[str]) -> Any:
    """A T5 (Unigram) tokenizer: the words of ``prompts`` and single characters; ``</s>`` ends every prompt."""
    from transformers import T5Tokenizer

    words = [w for w in _words(prompts) if w.isprintable()]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [(f"\u2581{w}", -1.0) for w in words] + [(c, -5.0) for c in CHARS]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def gemma_tokenizer() -> Any:
    """A character-level Gemma tokenizer (``<bos>`` first); its ``model_max_length`` is transformers' "no limit"."""
    from transformers import GemmaTokenizer

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"]
    vocab = {token: i for i, token in enumerate([*specials, "\u2581", *CHARS])}
    return GemmaTokenizer(vocab=vocab, merges=[], add_bos_token=True)


def bert_tokenizer(prompts: Iterable[str], model_max_length: int = 64) -> Any:
    """A BERT (WordPiece) tokenizer: the words of ``prompts`` plus every character, lower-cased."""
    from transformers import BertTokenizer

    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *CHARS, *[f"##{c}" for c in CHARS]]
    tokens += [w for w in _words(prompts) if w not in tokens and w.isalnum()]
    return BertTokenizer(vocab={t: i for i, t in enumerate(dict.fromkeys(tokens))},
                         model_max_length=model_max_length)


def _clip(prompts: Iterable[str], model_max_length: int = 77) -> Any:
    from benchmark.demo.models import train_clip_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        return train_clip_tokenizer(prompts, tmp, model_max_length=model_max_length)


def _clip_encoder(tokenizer: Any, with_projection: bool = False, hidden: int = 32) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=37, num_attention_heads=4,
                            num_hidden_layers=2, max_position_embeddings=tokenizer.model_max_length,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id, projection_dim=32)
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)


def _t5_encoder(tokenizer: Any, d_model: int = 32) -> Any:
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=d_model, d_kv=8, d_ff=37, num_layers=2,
                                   num_heads=4, relative_attention_num_buckets=8, pad_token_id=0,
                                   eos_token_id=1, decoder_start_token_id=0))


def _gemma_encoder(tokenizer: Any, hidden: int = 8) -> Any:
    from transformers import Gemma2Config, Gemma2Model

    return Gemma2Model(Gemma2Config(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=16,
                                    num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, head_dim=4,
                                    max_position_embeddings=8192, pad_token_id=tokenizer.pad_token_id,
                                    bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                    attn_implementation="eager"))


def _vae(latent_channels: int = 4, blocks: int = 1, image_size: int = 32) -> Any:
    """An AutoencoderKL that downsamples by ``2 ** (blocks - 1)``."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(sample_size=image_size, in_channels=3, out_channels=3, block_out_channels=(4,) * blocks,
                         down_block_types=("DownEncoderBlock2D",) * blocks,
                         up_block_types=("UpDecoderBlock2D",) * blocks, layers_per_block=1,
                         latent_channels=latent_channels, norm_num_groups=1, use_quant_conv=False,
                         use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)


def _sd_unet(cross_attention_dim: int, sd2: bool, image_size: int = 32) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(sample_size=image_size // 2, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), norm_num_groups=8, cross_attention_dim=cross_attention_dim,
                                attention_head_dim=(2, 4) if sd2 else 8, use_linear_projection=sd2,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))


def _sd_vae(image_size: int = 32) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         norm_num_groups=8, sample_size=image_size)


def _save(pipeline: Any, folder: str | Path) -> Path:
    folder = Path(folder)
    pipeline.save_pretrained(folder)
    return folder


def build_sd1(folder: str | Path, prompts: Iterable[str], seed: int = 0) -> Path:
    """Stable Diffusion 1.x: CLIP text encoder (77 tokens), epsilon-prediction DDIM."""
    from benchmark.demo.models import build_text_to_image

    return build_text_to_image(folder, list(prompts), image_size=32, seed=seed)


def build_sd2(folder: str | Path, prompts: Iterable[str], seed: int = 0) -> Path:
    """Stable Diffusion 2.x: linear-projection UNet, CLIP text encoder, v-prediction."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    torch.manual_seed(seed)
    tokenizer = _clip(prompts)
    scheduler = DDIMScheduler(num_train_timesteps=100, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1, prediction_type="v_prediction")
    return _save(StableDiffusionPipeline(vae=_sd_vae(), text_encoder=_clip_encoder(tokenizer), tokenizer=tokenizer,
                                         unet=_sd_unet(32, sd2=True), scheduler=scheduler, safety_checker=None,
                                         feature_extractor=None, requires_safety_checker=False), folder)


def build_radedit(folder: str | Path, prompts: Iterable[str], seed: int = 0) -> Path:
    """RadEdit-like: an SD2 UNet with a BERT text encoder (CXR-BERT style, 64 tokens here)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    tokenizer = bert_tokenizer(prompts)
    encoder = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                   num_attention_heads=4, intermediate_size=37,
                                   max_position_embeddings=tokenizer.model_max_length), add_pooling_layer=False)
    scheduler = DDIMScheduler(num_train_timesteps=100, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    return _save(StableDiffusionPipeline(vae=_sd_vae(), text_encoder=encoder, tokenizer=tokenizer,
                                         unet=_sd_unet(32, sd2=True), scheduler=scheduler, safety_checker=None,
                                         feature_extractor=None, requires_safety_checker=False), folder)


def build_sdxl(folder: str | Path, prompts: Iterable[str], seed: int = 0) -> Path:
    """SDXL: two CLIP text encoders (the second with projection), ``text_time`` added conditioning."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    prompts = list(prompts)
    tokenizer, tokenizer_2 = _clip(prompts), _clip(prompts)
    unet = UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
                                use_linear_projection=True, addition_embed_type="text_time",
                                addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
                                projection_class_embeddings_input_dim=80, cross_attention_dim=64, norm_num_groups=1)
    scheduler = EulerDiscreteScheduler(num_train_timesteps=100, beta_schedule="scaled_linear", steps_offset=1)
    return _save(StableDiffusionXLPipeline(vae=_sd_vae(), text_encoder=_clip_encoder(tokenizer), tokenizer=tokenizer,
                                           text_encoder_2=_clip_encoder(tokenizer_2, with_projection=True),
                                           tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler), folder)


def build_sd3(folder: str | Path, prompts: Iterable[str], seed: int = 0, clip_max_length: int = 16) -> Path:
    """SD3: two CLIP encoders (``clip_max_length`` tokens) and T5 (``max_sequence_length``), flow matching."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(seed)
    prompts = list(prompts)
    tokenizer, tokenizer_2 = _clip(prompts, clip_max_length), _clip(prompts, clip_max_length)
    tokenizer_3 = t5_tokenizer(prompts)
    transformer = SD3Transformer2DModel(sample_size=32, patch_size=1, in_channels=4, num_layers=1,
                                        attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32,
                                        joint_attention_dim=64, pooled_projection_dim=64, out_channels=4)
    return _save(StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=_vae(),
        text_encoder=_clip_encoder(tokenizer, with_projection=True), tokenizer=tokenizer,
        text_encoder_2=_clip_encoder(tokenizer_2, with_projection=True), tokenizer_2=tokenizer_2,
        text_encoder_3=_t5_encoder(tokenizer_3, d_model=64), tokenizer_3=tokenizer_3), folder)


def build_flux(folder: str | Path, prompts: Iterable[str], seed: int = 0, clip_max_length: int = 16,
               guidance_embeds: bool = True) -> Path:
    """Flux: CLIP (pooled, ``clip_max_length`` tokens) and T5; ``guidance_embeds`` as in FLUX.1-dev."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(seed)
    prompts = list(prompts)
    tokenizer, tokenizer_2 = _clip(prompts, clip_max_length), t5_tokenizer(prompts)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
                                         guidance_embeds=guidance_embeds)
    return _save(FluxPipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(),
                              vae=_vae(latent_channels=1), text_encoder=_clip_encoder(tokenizer), tokenizer=tokenizer,
                              text_encoder_2=_t5_encoder(tokenizer_2), tokenizer_2=tokenizer_2), folder)


def _pixart(pipeline_class: Callable[..., Any], folder: str | Path, prompts: Iterable[str], seed: int) -> Path:
    from diffusers import DPMSolverMultistepScheduler, PixArtTransformer2DModel

    torch.manual_seed(seed)
    tokenizer = t5_tokenizer(prompts)
    transformer = PixArtTransformer2DModel(sample_size=32, num_layers=1, patch_size=2, attention_head_dim=8,
                                           num_attention_heads=2, caption_channels=32, in_channels=4,
                                           cross_attention_dim=16, out_channels=8, attention_bias=True,
                                           activation_fn="gelu-approximate", num_embeds_ada_norm=1000,
                                           norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6)
    # 8x downsampling: the 256-px resolution bin of a 32-sample transformer is a 32x32 latent
    return _save(pipeline_class(tokenizer=tokenizer, text_encoder=_t5_encoder(tokenizer), vae=_vae(blocks=4),
                                transformer=transformer, scheduler=DPMSolverMultistepScheduler()), folder)


def build_pixart_alpha(folder: str | Path, prompts: Iterable[str], seed: int = 0) -> Path:
    """PixArt-Alpha: T5 cut at 120 tokens, resolution binning."""
    from diffusers import PixArtAlphaPipeline

    return _pixart(PixArtAlphaPipeline, folder, prompts, seed)


def build_pixart_sigma(folder: str | Path, prompts: Iterable[str], seed: int = 0) -> Path:
    """PixArt-Sigma: T5 cut at 300 tokens, resolution binning."""
    from diffusers import PixArtSigmaPipeline

    return _pixart(PixArtSigmaPipeline, folder, prompts, seed)


def build_sana(folder: str | Path, prompts: Iterable[str], seed: int = 0) -> Path:
    """Sana: a Gemma-2 text encoder (no tokenizer limit), its complex human instruction, a DC autoencoder."""
    from diffusers import AutoencoderDC, FlowMatchEulerDiscreteScheduler, SanaPipeline, SanaTransformer2DModel

    torch.manual_seed(seed)
    tokenizer = gemma_tokenizer()
    transformer = SanaTransformer2DModel(patch_size=1, in_channels=4, out_channels=4, num_layers=1,
                                         num_attention_heads=2, attention_head_dim=4, num_cross_attention_heads=2,
                                         cross_attention_head_dim=4, cross_attention_dim=8, caption_channels=8,
                                         sample_size=16)
    blocks = 6  # 32x downsampling: the 512-px resolution bin of a 16-sample transformer is a 16x16 latent
    vae = AutoencoderDC(in_channels=3, latent_channels=4, attention_head_dim=2,
                        encoder_block_types=("ResBlock",) * blocks, decoder_block_types=("ResBlock",) * blocks,
                        encoder_block_out_channels=(8,) * blocks, decoder_block_out_channels=(8,) * blocks,
                        encoder_qkv_multiscales=((),) * blocks, decoder_qkv_multiscales=((),) * blocks,
                        encoder_layers_per_block=(1,) * blocks, decoder_layers_per_block=(1,) * blocks,
                        downsample_block_type="conv", upsample_block_type="interpolate",
                        decoder_norm_types="rms_norm", decoder_act_fns="silu", scaling_factor=0.41407)
    return _save(SanaPipeline(tokenizer=tokenizer, text_encoder=_gemma_encoder(tokenizer), vae=vae,
                              transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0)), folder)


def build_lumina2(folder: str | Path, prompts: Iterable[str], seed: int = 0) -> Path:
    """Lumina2: a Gemma-2 text encoder (no tokenizer limit) whose budget the system prompt shares."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Lumina2Pipeline, Lumina2Transformer2DModel

    torch.manual_seed(seed)
    tokenizer = gemma_tokenizer()
    transformer = Lumina2Transformer2DModel(sample_size=16, patch_size=2, in_channels=4, hidden_size=8, num_layers=1,
                                            num_refiner_layers=1, num_attention_heads=1, num_kv_heads=1,
                                            multiple_of=16, ffn_dim_multiplier=None, norm_eps=1e-5,
                                            scaling_factor=1.0, axes_dim_rope=[4, 2, 2], cap_feat_dim=8)
    return _save(Lumina2Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(),
                                 vae=_vae(blocks=4), text_encoder=_gemma_encoder(tokenizer), tokenizer=tokenizer),
                 folder)


def _pixel_unet(num_class_embeds: int | None, image_size: int = 32) -> Any:
    from diffusers import UNet2DModel

    return UNet2DModel(sample_size=image_size, in_channels=1, out_channels=1, layers_per_block=1,
                       block_out_channels=(16, 32), norm_num_groups=8, num_class_embeds=num_class_embeds,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"))


def build_ddpm(folder: str | Path, seed: int = 0) -> Path:
    """An unconditional pixel-space DDPM (``DDPMPipeline`` folder)."""
    from diffusers import DDPMPipeline, DDPMScheduler

    torch.manual_seed(seed)
    return _save(DDPMPipeline(unet=_pixel_unet(None), scheduler=DDPMScheduler(num_train_timesteps=100)), folder)


def build_ddim(folder: str | Path, seed: int = 0) -> Path:
    """An unconditional pixel-space UNet with a DDIM scheduler (``DDIMPipeline`` folder)."""
    from diffusers import DDIMPipeline, DDIMScheduler

    torch.manual_seed(seed)
    return _save(DDIMPipeline(unet=_pixel_unet(None), scheduler=DDIMScheduler(num_train_timesteps=100)), folder)


def build_class_conditional_guided(folder: str | Path, num_classes: int, seed: int = 0) -> Path:
    """A class-conditional UNet laid out for classifier-free guidance: ``num_class_embeds = num_classes + 1``, the
    extra index (``num_classes``) being the null class, recorded as ``"null_class"`` in ``model_index.json``."""
    from diffusers import DDPMScheduler

    from benchmark.generation.pipelines import ClassConditionalPipeline

    torch.manual_seed(seed)
    pipeline = ClassConditionalPipeline(unet=_pixel_unet(num_classes + 1), scheduler=DDPMScheduler(100),
                                        null_class=num_classes)
    return _save(pipeline, folder)


BUILDERS: dict[str, Callable[..., Path]] = {
    "sd1": build_sd1, "sd2": build_sd2, "radedit": build_radedit, "sdxl": build_sdxl, "sd3": build_sd3,
    "flux": build_flux, "pixart-alpha": build_pixart_alpha, "pixart-sigma": build_pixart_sigma, "sana": build_sana,
    "lumina2": build_lumina2,
}

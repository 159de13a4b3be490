"""MergeDNA hyperparameters: one dataclass that travels with the weights as config.json."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import ModelError


@dataclass
class MergeDNAConfig:
    """Shape of a MergeDNA network and the choices model.md leaves to us.

    tiny, small and paper presets all build from this one class (see PRESETS).
    """

    name: str = "custom"
    d_model: int = 64            # width D of every block
    n_heads: int = 2
    mlp_hidden: int = 0          # SwiGLU hidden size; 0 means 8/3 * D rounded to a multiple of 16
    n_local_encoder: int = 4     # blocks with a merge step (the learned tokenizer)
    n_latent_encoder: int = 4    # full attention over tokens
    n_latent_decoder: int = 2
    n_local_decoder: int = 2     # local attention over bases
    window: int = 16             # local attention: a token sees w/2 neighbours each side;
                                 # local merging: windows of w tokens, shifted w/2 on odd blocks
    d_group: int = 64            # grouping projection width (merge scores)
    # Where the tokenizer's merge budget applies. "row": each row loses its exact number of tokens
    # anywhere, so masking one base can move merges across the whole window. "chunk": each
    # merge_chunk bases lose their own share and no merge crosses a chunk edge, so the response
    # to a mask stays inside its chunk (shared masked passes agree with one-position passes).
    merge_budget: str = "row"
    merge_chunk: int = 64
    context: int = 1024          # training / inference window in bases
    compression: float = 0.5     # inference: L = round(compression * N) local tokens
    # training samples the compression per step: normal(mean, sd) clipped to [low, high]
    train_compression: tuple[float, float, float, float] = (0.5, 0.05, 0.4, 0.6)
    latent_ratio: float = 0.5    # latent MTR merges L tokens down to K = ratio * L
    latent_merge_blocks: int = 2  # latent merging is spread over the first blocks
    # AMTM masking. "token" (the paper): mask whole local tokens, mask_fraction of them, chosen
    # with P ~ 1/g^2. "base": mask single bases, mask_fraction of them chosen with P ~ 1/g^2 of
    # their token, plus random_mask_fraction uniformly. Our default is uniform single bases only
    # (mask_fraction 0): token-aligned masks leak the tokenizer's boundaries, and the 1/g^2 choice
    # leaks the hidden bases through the clean sequence's group sizes (docs/model.md); single-base
    # masks are also what zero-shot scoring uses.
    mask_unit: str = "base"
    mask_fraction: float = 0.0
    random_mask_fraction: float = 0.15
    latent_mtr_weight: float = 0.25
    max_token_offset: int = 32   # local decoder: embedding of a base's offset inside its token
    rope_base: float = 10000.0
    format_version: int = field(default=1)

    def __post_init__(self) -> None:
        if isinstance(self.train_compression, list):
            self.train_compression = tuple(self.train_compression)
        problems = []
        positive = ("d_model", "n_heads", "d_group", "context", "max_token_offset", "n_local_encoder",
                    "n_latent_encoder", "n_local_decoder")
        problems += [f"{name} must be >= 1, got {getattr(self, name)}" for name in positive
                     if getattr(self, name) < 1]
        problems += [f"{name} must be >= 0, got {getattr(self, name)}"
                     for name in ("n_latent_decoder", "latent_merge_blocks") if getattr(self, name) < 0]
        if not 0.0 < self.latent_ratio <= 1.0:
            problems.append(f"latent_ratio must be in (0, 1], got {self.latent_ratio}")
        if len(self.train_compression) != 4 or not (
                0.05 <= self.train_compression[2] <= self.train_compression[0] <= self.train_compression[3] <= 1.0):
            problems.append("train_compression must be (mean, sd, low, high) with 0.05 <= low <= mean <= high <= 1")
        if problems:
            raise ModelError("invalid model config: " + "; ".join(problems))
        if self.d_model % self.n_heads:
            problems.append(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if (self.d_model // self.n_heads) % 2:
            problems.append("head size must be even for rotary embeddings")
        if self.window < 2 or self.window % 2:
            problems.append(f"window must be an even number >= 2, got {self.window}")
        if not 0.05 <= self.compression <= 1.0:
            problems.append(f"compression must be in [0.05, 1], got {self.compression}")
        if not 0.0 <= self.mask_fraction < 1.0:
            problems.append(f"mask_fraction must be in [0, 1), got {self.mask_fraction}")
        if self.mask_fraction + self.random_mask_fraction <= 0.0:
            problems.append("mask_fraction + random_mask_fraction must be > 0 (AMTM needs masks)")
        if self.merge_budget not in ("row", "chunk"):
            problems.append(f"merge_budget must be 'row' or 'chunk', got '{self.merge_budget}'")
        if self.merge_chunk < 2:
            problems.append(f"merge_chunk must be >= 2, got {self.merge_chunk}")
        if self.mask_unit not in ("token", "base"):
            problems.append(f"mask_unit must be 'token' or 'base', got '{self.mask_unit}'")
        if not 0.0 <= self.random_mask_fraction < 1.0:
            problems.append(f"random_mask_fraction must be in [0, 1), got {self.random_mask_fraction}")
        if problems:
            raise ModelError("invalid model config: " + "; ".join(problems))

    @property
    def hidden(self) -> int:
        return self.mlp_hidden or 16 * round(self.d_model * 8 / 3 / 16)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "MergeDNAConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(f"unknown model config keys {unknown}; expected some of {sorted(known)}")
        return cls(**data)

    @classmethod
    def preset(cls, name: str, **overrides) -> "MergeDNAConfig":
        if name not in PRESETS:
            raise ModelError(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


PRESETS: dict[str, dict] = {
    # Tests only: builds and trains in seconds.
    "tiny": dict(name="tiny", d_model=32, n_heads=2, n_local_encoder=2, n_latent_encoder=2,
                 n_latent_decoder=1, n_local_decoder=1, d_group=16, context=256,
                 latent_merge_blocks=1),
    # The shipped default, sized from measured CPU throughput so that 100M training bases fit in
    # about two hours on 2 CPU cores (docs/model.md has the measurements).
    "small": dict(name="small", d_model=64, n_heads=2, n_local_encoder=4, n_latent_encoder=4,
                  n_latent_decoder=1, n_local_decoder=1, d_group=32, context=512),
    # Twice the width of small, for GPU pre-training (about 4x the compute per base).
    "base": dict(name="base", d_model=128, n_heads=4, n_local_encoder=4, n_latent_encoder=6,
                 n_latent_decoder=1, n_local_decoder=1, d_group=64, context=512),
    # 13.7 M parameters for one lent GPU: head size 64, width 256 and MLP 768 (multiples of 128 for
    # the tensor cores), the depth in the latent encoder, which runs on half the positions.
    # 120 MFLOP per base per training step (FlopCounterMode, matmuls, without attention), 5.5x
    # base's 22; latent attention over L = 512 tokens adds about 0.8 MFLOP per block and pass.
    "large": dict(name="large", d_model=256, n_heads=4, mlp_hidden=768, n_local_encoder=4,
                  n_latent_encoder=10, n_latent_decoder=1, n_local_decoder=1, d_group=64,
                  context=1024),
    # The paper's size, for GPU clusters (about 380M parameters).
    "paper": dict(name="paper", d_model=1024, n_heads=16, n_local_encoder=4, n_latent_encoder=20,
                  n_latent_decoder=4, n_local_decoder=2, d_group=128, context=4096,
                  mask_unit="token", mask_fraction=0.5, random_mask_fraction=0.0),
}

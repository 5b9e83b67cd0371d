"""The CLIP that scores pictures (CLIP-T, CLIP-I): the toy base's ``clip_scorer/`` or a real CLIPModel folder.

The paper's feedback round ranks round-1 pictures by CLIP-T, and its tables report CLIP-T and CLIP-I. A real
aMUSEd folder ships only CLIP's text tower, so on the real path the user points ``--scorer`` at a local
transformers ``CLIPModel`` folder (e.g. clip-vit-large-patch14: config.json, model.safetensors, the tokenizer
files and preprocessor_config.json). Such a model sees pictures through its own ``CLIPImageProcessor`` (resize,
centre crop, normalise); the toy base's scorer reads the raw 64-px pictures in [-1, 1], as it was trained.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

from .io import UserError
from .muse import folders
from .muse.text import tokenize
from .oracle import to_tensor

EXAMPLE = "e.g. a local copy of openai/clip-vit-large-patch14"
CHUNK = 64  # pictures per forward: bounds memory with a 224-px ViT-L


@dataclass
class Scorer:
    model: CLIPModel
    tokenizer: CLIPTokenizer
    processor: CLIPImageProcessor | None  # None: raw pictures in [-1, 1] at the model's own size (the toy base)
    name: str  # says in reports which CLIP made the numbers

    @classmethod
    def load(cls, path: Path, device=None, dtype=None) -> "Scorer":
        """A transformers CLIPModel folder with its tokenizer and image processor; errors name what is missing."""
        path = Path(path)
        config = path / "config.json"
        if not config.is_file():
            raise UserError(f"--scorer {path}: no config.json there; expected a transformers CLIPModel folder "
                            f"({EXAMPLE})")
        try:
            kind = json.loads(config.read_text()).get("model_type")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
            raise UserError(f"--scorer {path}: config.json is not readable JSON ({e})") from None
        if kind in ("clip_text_model", "clip_vision_model"):
            tower = "text" if kind == "clip_text_model" else "vision"
            raise UserError(f"--scorer {path} holds only CLIP's {tower} tower ({kind}); scoring needs the whole "
                            f"CLIPModel, text and vision ({EXAMPLE})")
        if kind != "clip":
            raise UserError(f"--scorer {path} is not a CLIP model (model_type {kind!r}); expected a transformers "
                            f"CLIPModel folder ({EXAMPLE})")
        # transformers 5 saves the image settings in processor_config.json, older versions in preprocessor_config.json
        if not any((path / name).is_file() for name in ("preprocessor_config.json", "processor_config.json")):
            raise UserError(f"--scorer {path} has no preprocessor_config.json (nor processor_config.json): its "
                            f"CLIPImageProcessor settings (resize, crop, normalisation) are needed to show it pictures")
        try:
            folders.check_weights(folders.weight_files(path, "model"))
        except UserError as e:
            raise UserError(f"--scorer: {e}") from None
        try:
            tokenizer = CLIPTokenizer.from_pretrained(path)
            folders.check_tokenizer(tokenizer, path)
        except UserError as e:
            raise UserError(f"--scorer {e}") from None
        except (OSError, ValueError, TypeError) as e:
            raise UserError(f"--scorer {path}: its CLIP tokenizer (vocab.json, merges.txt) is missing or "
                            f"unreadable ({type(e).__name__})") from None
        try:
            processor = CLIPImageProcessor.from_pretrained(path)
            model = CLIPModel.from_pretrained(path, dtype=dtype, use_safetensors=True,
                                              variant=folders.variant(path, "model"))
        except (OSError, ValueError, RuntimeError) as e:
            first = str(e).splitlines()[0][:200]
            raise UserError(f"--scorer {path}: cannot load it as a CLIPModel ({first})") from None
        return cls(model.eval().to(device or "cpu"), tokenizer, processor, str(path))

    @classmethod
    def of_base(cls, base) -> "Scorer | None":
        """The base's own ``clip_scorer/`` (the toy base's tiny CLIP, sharing the base's tokenizer), if it has one."""
        if base.scorer is None:
            return None
        return cls(base.scorer, base.tokenizer, None, "the base's clip_scorer/")

    def pixels(self, images) -> torch.Tensor:
        """What the vision tower sees: (B, 3, S, S)."""
        if self.processor is None:
            return to_tensor(list(images))
        return self.processor(images=[np.asarray(im) for im in images], return_tensors="pt")["pixel_values"]

    @torch.no_grad()
    def image_embeds(self, images) -> torch.Tensor:
        """Unit embeddings of a list or any sliceable sequence of pictures (a ``PictureFolder``), a chunk at a time."""
        p = next(self.model.parameters())
        out = []
        for i in range(0, len(images), CHUNK):
            x = self.pixels(images[i:i + CHUNK]).to(p.device, p.dtype)
            out.append(self.model.visual_projection(self.model.vision_model(pixel_values=x).pooler_output))
        return F.normalize(torch.cat(out).float().cpu(), dim=-1)

    @torch.no_grad()
    def text_embeds(self, prompts: list[str]) -> torch.Tensor:
        ids = tokenize(self.tokenizer, prompts).to(self.model.device)
        pooled = self.model.text_model(input_ids=ids).pooler_output
        return F.normalize(self.model.text_projection(pooled).float().cpu(), dim=-1)

    def clip_t(self, images, prompts: list[str]) -> torch.Tensor:
        """Per-image cosine of the picture and its prompt."""
        return (self.image_embeds(images) * self.text_embeds(prompts)).sum(-1)

    def clip_i(self, images, reference: np.ndarray) -> torch.Tensor:
        """Per-image cosine to one reference picture."""
        return self.image_embeds(images) @ self.image_embeds([reference])[0]


def resolve(base, path: Path | None, device=None) -> Scorer | None:
    """``--scorer PATH`` if given, else the base's own scorer, else None."""
    if path is not None:
        p = next(base.transformer.parameters())
        return Scorer.load(path, device=device or p.device, dtype=p.dtype)
    return Scorer.of_base(base)


NO_SCORER = ("this base has no CLIP scorer (clip_scorer/): pass --scorer PATH, a local transformers CLIPModel "
             f"folder ({EXAMPLE}), or select another way (--select random or manual)")

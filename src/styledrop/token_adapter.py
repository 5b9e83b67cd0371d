"""``--adapter token``: textual inversion. Only the input embeddings of the style's words in T are learned.

G and T stay exactly as they are; what changes is what the descriptor's words (e.g. "in [v] style") mean to
T. Such an adapter cannot copy the reference's layout into G's layers the way an adapter inside G can, so it
is the baseline that tells layout copying from style learning, and a very small file (a few vectors) for
users. Its branch of guided sampling differs from G's own only in the text rows: Ĝθ(t) = G(Tθ(t)).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn as nn

from .io import UserError
from .muse.text import encode_text, encode_text_with_grad


class TokenAdapter(nn.Module):
    def __init__(self, cfg, base, words: str | None = None, ids: list[int] | None = None):
        super().__init__()
        if ids is None:
            if not (words or "").strip():
                raise UserError("a token adapter learns the words that name the style: give them (e.g. --style "
                                "'in [v] style')")
            ids = base.tokenizer(words.strip(), add_special_tokens=False)["input_ids"]
        self.cfg, self.words = cfg, (words or "").strip()
        self.register_buffer("ids", torch.tensor(ids, dtype=torch.long), persistent=False)
        emb = base.text_encoder.get_input_embeddings().weight
        self.vectors = nn.Parameter(emb[self.ids].detach().float().clone())  # starts as the words' own meaning
        self.gate: torch.Tensor | None = None  # set by gated sampling; G is not touched, so nothing to gate there
        self.scale = 1.0

    # the interface of the adapters inside G: nothing to hook there
    def attach(self, transformer) -> "TokenAdapter":
        return self

    def detach(self) -> None:
        pass

    def meta(self) -> dict:
        from dataclasses import asdict
        return {"adapter": asdict(self.cfg), "dim": self.vectors.shape[1], "sites": 0, "token_ids": self.ids.tolist(),
                "words": self.words}

    def _spans(self, input_ids: torch.Tensor) -> list[tuple[int, int]]:
        k, out = len(self.ids), []
        for row in range(input_ids.shape[0]):
            for j in range(input_ids.shape[1] - k + 1):
                if torch.equal(input_ids[row, j:j + k], self.ids.to(input_ids.device)):
                    out.append((row, j))
        return out

    @contextmanager
    def _in_text_encoder(self, text_encoder):
        """T with the learned vectors in place of the words' embeddings wherever they occur in a prompt."""
        def swap(module, inputs, out):
            out = out.clone()
            for row, j in self._spans(inputs[0]):
                out[row, j:j + len(self.ids)] = (self.vectors * self.scale).to(out.dtype)
            return out
        handle = text_encoder.get_input_embeddings().register_forward_hook(swap)
        try:
            yield
        finally:
            handle.remove()

    def encode_text(self, base, prompts: list[str], grad: bool = False):
        """(hidden, pooled) of ``prompts`` through T with the learned words; ``grad`` for training."""
        with self._in_text_encoder(base.text_encoder):
            return (encode_text_with_grad if grad else encode_text)(base.text_encoder, base.tokenizer, prompts)

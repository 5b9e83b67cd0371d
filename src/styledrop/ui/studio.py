"""The workflow behind the web UI, with no web in it: references -> train -> generate -> tick -> round 2.

One ``Studio`` per server. G is shared by everything (an adapter attaches hooks to it), so one
lock guards the model: a second training, or a generation while a training runs, is refused
with ``Busy`` instead of waiting or corrupting the run. Training runs in a thread so the page
can poll its progress; every finished round is saved as its own adapter file.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import adapters, world
from ..compose import compose_logits_fn, composed
from ..evaluate import style_prompt
from ..io import UserError, decode_image, save_png
from ..muse.sampler import DEFAULT_LAMBDA_A, DEFAULT_LAMBDA_B, SampleConfig, generate, guided_logits_fn
from ..muse.text import short
from ..train import TrainConfig, caption_for, train_adapter

MAX_REFERENCES = 16
MAX_IMAGES_PER_CALL = 64


class Busy(UserError):
    """The model is in use by a training; the caller should retry later."""


class Cancelled(Exception):
    """Raised inside a training's progress callback when the user cancels it."""


@dataclass
class Job:
    kind: str  # "round 1", "round 2", ..., "subject"
    total: int
    step: int = 0
    loss: float | None = None
    state: str = "running"  # running | done | failed | cancelled
    error: str | None = None
    started: float = field(default_factory=time.time)
    cancel: bool = False  # asked to stop; the training thread stops at its next step

    def public(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "cancel"}

    def doing(self) -> str:
        return f"{self.kind} is training (step {self.step}/{self.total})"


class Studio:
    def __init__(self, base, workdir: Path, adapter_kind: str = "bottleneck", batch: int = 8,
                 lr: float = TrainConfig.lr, scorer=None):
        self.base, self.dir = base, Path(workdir)
        self.scorer = scorer  # scores each generated picture against its prompt (CLIP-T), for ticking by CLIP
        self.dir.mkdir(parents=True, exist_ok=True)
        self.adapter_cfg = adapters.AdapterConfig(adapter_kind, 4 if adapter_kind == "lora" else 8)
        self.batch, self.lr = batch, lr
        self.references: list[np.ndarray] = []
        self.descriptor = ""
        self.content = ""
        self.adapter = None
        self.adapter_file: Path | None = None
        self.round = 0
        self.rounds: dict[int, tuple] = {}  # round -> (adapter, file): any round's style can be sampled
        self.subject_images: list[np.ndarray] = []
        self.subject = None
        self.subject_caption = ""
        self.images: list[dict] = []  # every generated image: {"id", "prompt", "file", "round", "seed", "batch"}
        self.picks: list[int] = []  # the ticked images, held here so a reload keeps them
        self.batches = 0
        self.job: Job | None = None
        self._model = threading.Lock()  # G + attached adapter: one user at a time
        self._state = threading.Lock()  # short critical sections on the lists above
        self._decode = threading.Semaphore(1)  # one upload decoded at a time: parallel uploads cannot pile up memory

    # uploads ----------------------------------------------------------------------------------
    def _decode_all(self, files: list[tuple[str, bytes]]) -> tuple[list[np.ndarray], list[str]]:
        """Decode every file first, so one bad file adds nothing."""
        if not files:
            raise UserError("no file uploaded")
        decoded, notes = [], []
        with self._decode:
            for name, data in files:
                image, why = decode_image(data, repr(short(name, 60)), self.base.image_size)
                decoded.append(image)
                notes += [f"{short(name, 60)}: {n}" for n in why]
        return decoded, notes

    def add_references(self, files: list[tuple[str, bytes]], kind: str = "references") -> list[str]:
        """Style references (``kind="references"``) or subject images (``kind="subject"``)."""
        decoded, notes = self._decode_all(files)
        with self._state:
            target = self.references if kind == "references" else self.subject_images
            if len(target) + len(decoded) > MAX_REFERENCES:
                raise UserError(f"at most {MAX_REFERENCES} images")
            for im in decoded:
                save_png(self.dir / kind / f"{len(target)}.png", im)
                target.append(im)
        return notes

    def clear_references(self, kind: str = "references") -> None:
        with self._state:
            (self.references if kind == "references" else self.subject_images).clear()

    # training ---------------------------------------------------------------------------------
    def start_training(self, descriptor: str, content: str = "", steps: int = 200,
                       chosen: list[int] | None = None) -> Job:
        """Round 1 on the references (``chosen`` None), or the next round on references + chosen images."""
        descriptor = descriptor.strip()
        if not self.references:
            raise UserError("upload at least one reference image first")
        if not descriptor:
            raise UserError("type a style descriptor, e.g. 'in watercolor style'")
        known = {r["id"]: r for r in self.images}
        if chosen is not None:
            if self.adapter is None:
                raise UserError("train round 1 before round 2")
            if not chosen:
                raise UserError("tick at least one good image for the next round")
            missing = [i for i in chosen if i not in known]
            if missing:
                raise UserError(f"unknown image ids: {missing}")
        images = list(self.references)
        captions = [caption_for(content, descriptor)] * len(images)
        for i in sorted(set(chosen or [])):
            images.append(decode_image((self.dir / known[i]["file"]).read_bytes(), known[i]["file"])[0])
            captions.append(style_prompt(known[i]["prompt"], descriptor))
        number = self.round + 1 if chosen is not None else 1

        def done(theta, job):
            path = self.dir / f"adapter-round{number}.safetensors"
            adapters.save(path, theta, self.base, {
                "role": "style", "style": descriptor, "content": content, "caption": captions[0],
                "train": {"steps": steps, "lr": self.lr, "batch": self.batch, "round": number,
                          "images": len(images), "ui": True}})
            self.adapter, self.adapter_file, self.round = theta, path, number
            if number == 1:  # a new round 1 starts a new line of rounds: the old later rounds came from another
                self.rounds.clear()
            self.rounds[number] = (theta, path)
            self.descriptor, self.content = descriptor, content

        return self._start(f"round {number}", images, captions, steps, done, descriptor)

    def start_subject_training(self, token: str, class_noun: str, steps: int = 200) -> Job:
        """A subject (content) adapter on the subject images, captioned 'a [v] fish'."""
        token, class_noun = token.strip(), class_noun.strip()
        if not self.subject_images:
            raise UserError("upload the subject's images first (3-6 pictures of one object)")
        if not token or not class_noun:
            raise UserError("give a rare token (e.g. '[v]') and the subject's class (e.g. 'fish')")
        caption = f"{world.article(token)} {token} {class_noun}"

        def done(theta, job):
            path = self.dir / "adapter-subject.safetensors"
            adapters.save(path, theta, self.base, {
                "role": "subject", "token": token, "class": class_noun, "caption": caption,
                "train": {"steps": steps, "lr": self.lr, "batch": self.batch, "images": len(self.subject_images),
                          "ui": True}})
            self.subject, self.subject_caption = theta, caption

        return self._start("subject", list(self.subject_images), [caption] * len(self.subject_images), steps, done,
                           token)

    def _busy(self, what: str) -> Busy:
        job = self.job
        doing = job.doing() if job is not None and job.state == "running" else "the model is in use"
        return Busy(f"busy: {doing}; {what}")

    def _start(self, kind: str, images, captions, steps: int, done, words: str) -> Job:
        if not 1 <= steps <= 5000:
            raise UserError(f"steps must be in 1..5000, got {steps}")
        if not self._model.acquire(blocking=False):
            raise self._busy("wait for it to finish or cancel it")
        try:
            job = Job(kind=kind, total=steps)
            self.job = job
            threading.Thread(target=self._train, args=(job, images, captions, steps, done, words), daemon=True).start()
        except BaseException:
            self._model.release()
            raise
        return job

    def _train(self, job: Job, images, captions, steps, done, words: str) -> None:
        try:
            def progress(i, n, losses):
                job.step, job.loss = i, losses["loss"]
                if job.cancel:
                    raise Cancelled()

            theta = train_adapter(self.base, images, captions, self.adapter_cfg,
                                  TrainConfig(steps=steps, batch=self.batch, lr=self.lr), progress=progress,
                                  words=words)
            done(theta, job)
            job.state = "done"
        except Cancelled:  # the previous adapter stays in place
            job.state = "cancelled"
        except Exception as e:  # shown on the page; the previous adapter stays in place
            job.state, job.error = "failed", str(e)
        finally:
            self._model.release()

    # sampling ---------------------------------------------------------------------------------
    def generate(self, prompt: str, n: int = 8, seed: int = 0, lambda_a: float = DEFAULT_LAMBDA_A,
                 lambda_b: float = DEFAULT_LAMBDA_B, steps: int = 12, style_round: int | None = None,
                 subject: bool = False, gamma: float = 0.5) -> list[dict]:
        """Images in the chosen round's style (default: the latest); with ``subject``, two-theta with the
        subject adapter (the prompt should name the subject, e.g. 'a [v] fish')."""
        prompt = prompt.strip()
        if not prompt:
            raise UserError("type a prompt, e.g. 'a boat'")
        if not 1 <= n <= MAX_IMAGES_PER_CALL:
            raise UserError(f"number of images must be in 1..{MAX_IMAGES_PER_CALL}, got {n}")
        if not 0 <= gamma <= 1:
            raise UserError(f"gamma must be in [0, 1], got {gamma}")
        if self.adapter is None:
            if self.job is not None and self.job.state == "running":
                raise self._busy("generate when it has finished")
            raise UserError("train an adapter first")
        if style_round is not None and style_round not in self.rounds:
            raise UserError(f"no round {style_round}; trained rounds: {sorted(self.rounds)}")
        if subject and self.subject is None:
            raise UserError("train a subject adapter first (subject section)")
        style = self.rounds[style_round][0] if style_round is not None else self.adapter
        if not self._model.acquire(blocking=False):
            raise self._busy("generate when it has finished")
        number = style_round if style_round is not None else self.round
        try:
            full = style_prompt(prompt, self.descriptor)
            cfg = SampleConfig(steps=steps, seed=seed)
            if subject:
                with composed(self.base, style, self.subject, "two-theta"):
                    images = generate(self.base, [full] * n, cfg, logits_fn_for=lambda ps: compose_logits_fn(
                        self.base, ps, self.descriptor, style, self.subject, mode="two-theta", gamma=gamma,
                        lambda_a=lambda_a, lambda_b=lambda_b))
            else:
                with adapters.attached(style, self.base.transformer):
                    images = generate(self.base, [full] * n, cfg, logits_fn_for=lambda ps: guided_logits_fn(
                        self.base, ps, lambda_b=lambda_b, adapter=style, lambda_a=lambda_a))
            scores = self.scorer.clip_t(images, [prompt] * n).tolist() if self.scorer is not None else None
        finally:
            self._model.release()
        return self._add_batch(images, {"prompt": prompt, "round": number, "subject": subject}, seed, scores=scores)

    def _add_batch(self, images, fields: dict, seed: int, source: np.ndarray | None = None,
                   scores: list[float] | None = None) -> list[dict]:
        """Save one batch into the gallery: a row per image with ``fields``, its seed and the batch number;
        ``source``: the restyled input, saved once for the batch and named in every row; ``scores``: CLIP-T."""
        rows = []
        with self._state:
            self.batches += 1
            if source is not None:
                fields = fields | {"input": f"restyle/{self.batches}.png"}
                save_png(self.dir / fields["input"], source)
            for k, im in enumerate(images):
                row = {"id": len(self.images), "file": f"images/{len(self.images)}.png", "seed": seed + k,
                       "batch": self.batches} | fields | ({"clip_t": round(scores[k], 4)} if scores else {})
                save_png(self.dir / row["file"], im)
                self.images.append(row)
                rows.append(row)
        return rows

    def restyle(self, name: str, data: bytes, strength: float, n: int = 4, seed: int = 0, prompt: str = "",
                style_round: int | None = None) -> tuple[str, list[dict]]:
        """Restyle one uploaded picture in the chosen round's style: (the input's URL, the new gallery rows)."""
        from ..restyle import RestyleConfig
        from ..restyle import restyle as run
        try:
            rc = RestyleConfig(strength=strength)
        except ValueError as e:
            raise UserError(str(e)) from None
        if not 1 <= n <= MAX_IMAGES_PER_CALL:
            raise UserError(f"number of images must be in 1..{MAX_IMAGES_PER_CALL}, got {n}")
        if self.adapter is None:
            raise self._busy("restyle when it has finished") if self.job is not None and \
                self.job.state == "running" else UserError("train an adapter first")
        if style_round is not None and style_round not in self.rounds:
            raise UserError(f"no round {style_round}; trained rounds: {sorted(self.rounds)}")
        (picture,), _ = self._decode_all([(name, data)])
        style = self.rounds[style_round][0] if style_round is not None else self.adapter
        number = style_round if style_round is not None else self.round
        text = style_prompt(prompt.strip() or "a picture", self.descriptor)
        if not self._model.acquire(blocking=False):
            raise self._busy("restyle when it has finished")
        try:
            images, _ = run(self.base, [picture] * n, [text] * n, SampleConfig(seed=seed), rc, style,
                            DEFAULT_LAMBDA_A, DEFAULT_LAMBDA_B)
        finally:
            self._model.release()
        rows = self._add_batch(images, {"prompt": text, "round": number, "subject": False, "strength": strength},
                               seed, source=picture)
        return f"/api/{rows[0]['input']}", rows

    def cancel(self) -> dict:
        """Ask the running training to stop at its next step; the previous adapter stays."""
        job = self.job
        if job is None or job.state != "running":
            raise UserError("no training is running")
        job.cancel = True
        return job.public()

    def set_picks(self, ids: list[int]) -> list[int]:
        known = {r["id"] for r in self.images}
        missing = [i for i in ids if i not in known]
        if missing:
            raise UserError(f"unknown image ids: {missing[:10]}")
        with self._state:
            self.picks = sorted(set(ids))
        return self.picks

    def pick_by_clip(self) -> list[int]:
        """Tick the best picture of each generated batch by CLIP-T (the paper's CLIP feedback), as well as
        those already ticked."""
        if self.scorer is None:
            raise UserError("no CLIP scorer: start the studio with --scorer PATH (a transformers CLIPModel folder) "
                            "or tick pictures by hand")
        with self._state:
            best: dict[int, dict] = {}
            for r in self.images:
                if "clip_t" in r and r["clip_t"] > best.get(r["batch"], {"clip_t": -2.0})["clip_t"]:
                    best[r["batch"]] = r
            if not best:
                raise UserError("generate some pictures first: CLIP ticks the best of each batch")
            self.picks = sorted(set(self.picks) | {r["id"] for r in best.values()})
            return list(self.picks)

    @staticmethod
    def public_image(row: dict) -> dict:
        keys = ("id", "prompt", "round", "seed", "batch", "subject")
        extra = {"input": f"/api/{row['input']}", "strength": row["strength"]} if "input" in row else {}
        extra |= {"clip_t": row["clip_t"]} if "clip_t" in row else {}
        return {k: row[k] for k in keys} | {"url": f"/api/{row['file']}"} | extra

    def status(self) -> dict:
        return {"references": len(self.references), "subject_images": len(self.subject_images),
                "round": self.round, "rounds": sorted(self.rounds), "descriptor": self.descriptor,
                "content": self.content, "adapter": self.adapter_file.name if self.adapter_file else None,
                "subject": self.subject_caption if self.subject is not None else None,
                "job": self.job.public() if self.job else None,
                "scorer": self.scorer.name if self.scorer is not None else None,
                "busy": self.job.doing() if self.job is not None and self.job.state == "running" else None}

    def state(self) -> dict:
        """Everything the page shows, so that a reload restores it: status, the gallery and the ticks."""
        with self._state:
            return self.status() | {"images": [self.public_image(r) for r in self.images], "picks": list(self.picks)}

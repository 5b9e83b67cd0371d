"""The workflow behind the web UI, with no web in it: references -> train -> generate -> tick -> round 2.

One ``Studio`` per server. Its work lives in a run folder (``runs.py``) whose state is saved after every change
and read back on start, so a restart keeps everything; a training cut off by a stop or a crash is marked
"interrupted" with its last step and can be started again. Trainings and generations wait their turn in one
queue (``jobs.py``), whose worker alone touches the model.
"""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import numpy as np

from .. import adapters, defaults, world
from ..compose import compose_logits_fn, composed
from ..evaluate import style_prompt
from ..io import UserError, decode_image, save_png
from ..muse.sampler import SampleConfig, generate, guided_logits_fn
from ..muse.text import short
from ..train import TrainConfig, caption_for, train_adapter
from . import runs
from .jobs import Cancelled, Job, JobQueue

MAX_REFERENCES = 16
MAX_IMAGES_PER_CALL = 64
MAX_WAITING = 32  # jobs in the queue besides the running one
SAVE_EVERY = 1.0  # seconds between state saves during a training (its last step survives a crash)


class Studio:
    def __init__(self, base, workdir: Path, adapter_kind: str | None = None, batch: int | None = None,
                 lr: float | None = None, scorer=None, queue_limit: int = MAX_WAITING, log=None):
        """Settings left None are the base's defaults (``defaults.py``: the tiny base's tuned values, a real
        aMUSEd folder's from the paper and diffusers' recipe, or the folder's own styledrop.json)."""
        self.base, self.workdir = base, Path(workdir)
        self.scorer = scorer  # scores each generated picture against its prompt (CLIP-T), for ticking by CLIP
        given = {"adapter": adapter_kind, "rank": None, "lr": lr, "batch": batch, "train_steps": None,
                 "lambda_a": None, "lambda_b": None, "sample_steps": None, "token_temperature": None,
                 "temperature": None}
        self.defaults, self.sources = defaults.settle(base, given)
        kind = self.defaults["adapter"]
        rank = 4 if kind == "lora" and adapter_kind is not None and base.knows_world else self.defaults["rank"]
        self.adapter_cfg = adapters.AdapterConfig(kind, rank)
        self.batch, self.lr = self.defaults["batch"], self.defaults["lr"]
        self.log = log or (lambda message: None)
        self._state = threading.RLock()  # the run's state and files
        self._decode = threading.Semaphore(1)  # one upload decoded at a time: parallel uploads cannot pile up memory
        self._pace = {"step": None, "image": None}  # measured seconds per training step / generated picture
        self._last_save = 0.0
        self._stopping = False
        self.queue = JobQueue(queue_limit, self._changed)
        existing = runs.listing(self.workdir)
        try:  # the run last worked on (an earlier run may have been opened again after a newer one)
            self.open_run(max(existing, key=lambda r: r["updated"])["id"]) if existing else self.new_run()
        except UserError as e:  # the last run cannot be continued here (another base, a missing adapter)
            self.log(f"not continuing the last studio run: {e}; starting a new one")
            self.new_run()

    # runs -------------------------------------------------------------------------------------
    def _settings(self) -> dict:
        return {"adapter": self.adapter_cfg.kind, "rank": self.adapter_cfg.rank, "batch": self.batch, "lr": self.lr}

    def new_run(self) -> dict:
        self._idle_or_refuse("start a new run")
        with self._state:
            self.dir, self.state = runs.create(self.workdir, self.base.model_id(), self._settings())
            self._adapters: dict[int, object] = {}
            self._subject = None
            self._ids = itertools.count(1)
        return self.status()

    def open_run(self, run_id: str) -> dict:
        """Continue a run kept on disk: its adapters are loaded, and trainings it had running are marked
        interrupted (their last step kept)."""
        self._idle_or_refuse("open another run")
        folder = runs.runs_dir(self.workdir) / run_id
        if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith(".") or not folder.is_dir():
            raise UserError(f"no studio run {short(run_id, 60)!r} in {runs.runs_dir(self.workdir)}")
        state = runs.load(folder)
        loaded = {int(r): adapters.load(folder / f, self.base)[0] for r, f in state["rounds"].items()}
        subject = adapters.load(folder / state["subject"]["file"], self.base)[0] if state["subject"] else None
        cut = [t for t in state["trainings"] if t["state"] in ("queued", "running")]
        for t in cut:
            t["state"] = "interrupted"
            self.log(f"studio run {run_id}: {t['kind']} was interrupted at step {t['step']}/{t['total']}; "
                     f"start it again from the page")
        with self._state:
            self.dir, self.state, self._adapters, self._subject = folder, state, loaded, subject
            self._ids = itertools.count(max([t["id"] for t in state["trainings"]], default=0) + 1)
            if cut:
                self._save()
        return self.status()

    def _idle_or_refuse(self, what: str) -> None:
        if hasattr(self, "state") and not self.queue.idle():
            raise UserError(f"wait until the queue is empty to {what} (or cancel what waits)")

    def _save(self) -> None:
        with self._state:
            runs.save(self.dir, self.state)
            self._last_save = time.time()

    def shutdown(self) -> None:
        """On a stop: whatever runs or waits is marked interrupted, with its last step, and the state saved."""
        self._stopping = True  # from here a training's progress no longer marks it running
        for job in self.queue.shutdown():
            if job.training:
                self.log(f"{job.kind} interrupted at step {job.step}/{job.total} by the stop; start it again from "
                         f"the page")
        with self._state:
            for t in self.state["trainings"]:
                if t["state"] in ("queued", "running"):
                    t["state"] = "interrupted"
            self._save()

    def _record(self, job: Job) -> dict | None:
        return next((t for t in self.state["trainings"] if t["id"] == job.id), None)

    def _changed(self, job: Job) -> None:
        """The queue's callback: a training's progress and end go into the run's state."""
        if not job.training or (self._stopping and job.state == "running"):
            return
        with self._state:
            record = self._record(job)
            if record is None:
                return
            record.update({k: v for k, v in job.public().items() if k in ("kind", "state", "step", "total", "loss",
                                                                           "error")})
            if job.state != "running" or time.time() - self._last_save >= SAVE_EVERY:
                self._save()

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

    def _list(self, kind: str) -> list[str]:
        if kind not in ("references", "subject"):
            raise UserError(f"kind must be references or subject, got {short(kind, 30)!r}")
        return self.state["references" if kind == "references" else "subject_images"]

    def add_references(self, files: list[tuple[str, bytes]], kind: str = "references") -> list[str]:
        """Style references (``kind="references"``) or subject images (``kind="subject"``)."""
        decoded, notes = self._decode_all(files)
        with self._state:
            target = self._list(kind)
            if len(target) + len(decoded) > MAX_REFERENCES:
                raise UserError(f"at most {MAX_REFERENCES} images; {len(target)} already uploaded")
            for im in decoded:
                name = runs.new_file(self.state, kind)
                save_png(self.dir / name, im)
                target.append(name)
            self._save()
        return notes

    def clear_references(self, kind: str = "references") -> None:
        """Remove the uploads of ``kind``, files included (their numbers are not used again)."""
        with self._state:
            target = self._list(kind)
            for name in target:
                (self.dir / name).unlink(missing_ok=True)
            target.clear()
            self._save()

    def _read(self, name: str, what: str) -> np.ndarray:
        path = self.dir / name
        if not path.is_file():
            raise UserError(f"{what} {name} is missing from the run folder {self.dir}")
        return decode_image(path.read_bytes(), name, self.base.image_size)[0]

    # training ---------------------------------------------------------------------------------
    def start_training(self, descriptor: str, content: str = "", steps: int = 200,
                       chosen: list[int] | None = None) -> Job:
        """Round 1 on the references (``chosen`` None), or the next round on references + chosen images."""
        descriptor = descriptor.strip()
        with self._state:
            if not self.state["references"]:
                raise UserError("upload at least one reference image first")
            if not descriptor:
                raise UserError("type a style descriptor, e.g. 'in watercolor style'")
            known = {r["id"]: r for r in self.state["images"]}
            if chosen is not None:
                if not self.state["rounds"] and not self._waiting_round1():
                    raise UserError("train round 1 before round 2")
                if not chosen:
                    raise UserError("tick at least one good image for the next round")
                missing = [i for i in chosen if i not in known]
                if missing:
                    raise UserError(f"unknown image ids: {missing[:10]}")
            images = [self._read(f, "reference") for f in self.state["references"]]
            captions = [caption_for(content, descriptor)] * len(images)
            for i in sorted(set(chosen or [])):
                images.append(self._read(known[i]["file"], f"ticked picture #{i}"))
                captions.append(style_prompt(known[i]["prompt"], descriptor))
        params = {"what": "round1" if chosen is None else "next", "descriptor": descriptor, "content": content,
                  "steps": steps} | ({} if chosen is None else {"ids": sorted(set(chosen))})

        def done(theta, job):
            number = 1 if chosen is None else int(self.state["round"]) + 1
            job.kind = f"round {number}"
            name = runs.new_file(self.state, "adapters", ".safetensors", f"-round{number}")
            adapters.save(self.dir / name, theta, self.base, {
                "role": "style", "style": descriptor, "content": content, "caption": captions[0],
                "train": {"steps": steps, "lr": self.lr, "batch": self.batch, "round": number,
                          "images": len(images), "ui": True}})
            if number == 1:  # a new round 1 starts a new line of rounds: the old later rounds came from another
                self.state["rounds"], self._adapters = {}, {}
            self.state["rounds"][str(number)] = name
            self._adapters[number] = theta
            self.state.update(round=number, descriptor=descriptor, content=content)
            self._record(job)["file"] = name

        return self._submit("round 1" if chosen is None else "next round", images, captions, steps, done, descriptor,
                            params)

    def _waiting_round1(self) -> bool:
        running, waiting = self.queue.snapshot()
        return any(j.params.get("what") == "round1" for j in ([running] if running else []) + waiting)

    def start_subject_training(self, token: str, class_noun: str, steps: int = 200) -> Job:
        """A subject (content) adapter on the subject images, captioned 'a [v] fish'."""
        token, class_noun = token.strip(), class_noun.strip()
        with self._state:
            if not self.state["subject_images"]:
                raise UserError("upload the subject's images first (3-6 pictures of one object)")
            if not token or not class_noun:
                raise UserError("give a rare token (e.g. '[v]') and the subject's class (e.g. 'fish')")
            images = [self._read(f, "subject image") for f in self.state["subject_images"]]
        caption = f"{world.article(token)} {token} {class_noun}"

        def done(theta, job):
            name = runs.new_file(self.state, "adapters", ".safetensors", "-subject")
            adapters.save(self.dir / name, theta, self.base, {
                "role": "subject", "token": token, "class": class_noun, "caption": caption,
                "train": {"steps": steps, "lr": self.lr, "batch": self.batch, "images": len(images), "ui": True}})
            self.state["subject"] = {"file": name, "caption": caption}
            self._subject = theta
            self._record(job)["file"] = name

        return self._submit("subject", images, [caption] * len(images), steps, done, token,
                            {"what": "subject", "token": token, "class_noun": class_noun, "steps": steps})

    def restart(self, job_id: int) -> Job:
        """Start an interrupted, cancelled or failed training again with the same settings."""
        with self._state:
            record = next((t for t in self.state["trainings"] if t["id"] == job_id), None)
        if record is None:
            raise UserError(f"no training {job_id} in this run")
        if record["state"] not in ("interrupted", "cancelled", "failed"):
            raise UserError(f"training {job_id} is {record['state']}; only an interrupted, cancelled or failed one "
                            f"can be started again")
        p = record["params"]
        if p["what"] == "subject":
            return self.start_subject_training(p["token"], p["class_noun"], p["steps"])
        return self.start_training(p["descriptor"], p["content"], p["steps"],
                                   chosen=p["ids"] if p["what"] == "next" else None)

    def _submit(self, kind: str, images, captions, steps: int, done, words: str, params: dict) -> Job:
        if not 1 <= steps <= 5000:
            raise UserError(f"steps must be in 1..5000, got {steps}")
        pace = self._pace["step"]

        def run(job: Job):
            def progress(i, n, losses):
                job.step, job.loss = i, losses["loss"]
                if job.cancel:
                    raise Cancelled()
                self._changed(job)

            t = time.time()
            theta = train_adapter(self.base, images, captions, self.adapter_cfg,
                                  TrainConfig(steps=steps, batch=self.batch, lr=self.lr), progress=progress,
                                  words=words)
            self._pace["step"] = (time.time() - t) / steps
            with self._state:
                done(theta, job)
                self._save()

        job = Job(kind=kind, total=steps, run=run, params=params, id=next(self._ids),
                  estimate=None if pace is None else pace * steps)
        with self._state:
            self.state["trainings"].append({"id": job.id, "kind": kind, "state": "queued", "step": 0,
                                            "total": steps, "loss": None, "error": None, "params": params,
                                            "file": None})
            try:
                self.queue.submit(job)
            except UserError:
                self.state["trainings"].pop()
                raise
            self._save()
        return job

    # sampling ---------------------------------------------------------------------------------
    def _style(self, style_round: int | None):
        """(the style adapter, its round) to sample with, checked when the job runs (a training may be ahead)."""
        if not self._adapters:
            raise UserError("train an adapter first")
        number = int(self.state["round"]) if style_round is None else style_round
        if number not in self._adapters:
            raise UserError(f"no round {style_round}; trained rounds: {sorted(self._adapters)}")
        return self._adapters[number], number

    def _check_sampling(self, style_round: int | None, subject: bool) -> None:
        """Refuse at once what can never run; what a waiting training will make possible may wait for it."""
        if not self._adapters and not self._waiting_round1():
            raise UserError("train an adapter first")
        if style_round is not None and style_round not in self._adapters and self.queue.idle():
            raise UserError(f"no round {style_round}; trained rounds: {sorted(self._adapters)}")
        if subject and self._subject is None and self.queue.idle():
            raise UserError("train a subject adapter first (subject section)")

    def _submit_sampling(self, kind: str, n: int, make) -> list[dict]:
        pace = self._pace["image"]

        def run(job: Job):
            t = time.time()
            rows = make()
            self._pace["image"] = (time.time() - t) / n
            return rows

        job = Job(kind=kind, total=n, run=run, id=next(self._ids), estimate=None if pace is None else pace * n)
        return self.queue.submit(job).wait()

    def _sample_config(self, seed: int, steps: int | None = None) -> SampleConfig:
        d = self.defaults
        return SampleConfig(steps=steps or d["sample_steps"], seed=seed, token_temperature=d["token_temperature"],
                            temperature=d["temperature"])

    def generate(self, prompt: str, n: int = 8, seed: int = 0, lambda_a: float | None = None,
                 lambda_b: float | None = None, steps: int | None = None, style_round: int | None = None,
                 subject: bool = False, gamma: float = 0.5) -> list[dict]:
        """Images in the chosen round's style (default: the latest); with ``subject``, two-theta with the
        subject adapter (the prompt should name the subject, e.g. 'a [v] fish'). Waits for its turn."""
        prompt = prompt.strip()
        if not prompt:
            raise UserError("type a prompt, e.g. 'a boat'")
        if not 1 <= n <= MAX_IMAGES_PER_CALL:
            raise UserError(f"number of images must be in 1..{MAX_IMAGES_PER_CALL}, got {n}")
        if not 0 <= gamma <= 1:
            raise UserError(f"gamma must be in [0, 1], got {gamma}")
        self._check_sampling(style_round, subject)
        lambda_a = self.defaults["lambda_a"] if lambda_a is None else lambda_a
        lambda_b = self.defaults["lambda_b"] if lambda_b is None else lambda_b
        cfg = self._sample_config(seed, steps)

        def make():
            style, number = self._style(style_round)
            if subject and self._subject is None:
                raise UserError("train a subject adapter first (subject section)")
            full = style_prompt(prompt, self.state["descriptor"])
            if subject:
                with composed(self.base, style, self._subject, "two-theta"):
                    images = generate(self.base, [full] * n, cfg, logits_fn_for=lambda ps: compose_logits_fn(
                        self.base, ps, self.state["descriptor"], style, self._subject, mode="two-theta", gamma=gamma,
                        lambda_a=lambda_a, lambda_b=lambda_b))
            else:
                with adapters.attached(style, self.base.transformer):
                    images = generate(self.base, [full] * n, cfg, logits_fn_for=lambda ps: guided_logits_fn(
                        self.base, ps, lambda_b=lambda_b, adapter=style, lambda_a=lambda_a))
            scores = self.scorer.clip_t(images, [prompt] * n).tolist() if self.scorer is not None else None
            fields = {"prompt": prompt, "round": number, "subject": subject, "lambda_a": lambda_a,
                      "lambda_b": lambda_b, "steps": cfg.steps} | ({"gamma": gamma} if subject else {})
            return self._add_batch(images, fields, seed, scores=scores)

        return self._submit_sampling("generate", n, make)

    def _add_batch(self, images, fields: dict, seed: int, source: np.ndarray | None = None,
                   scores: list[float] | None = None) -> list[dict]:
        """Save one batch into the gallery: a row per image with ``fields``, its seed and the batch number;
        ``source``: the restyled input, saved once for the batch and named in every row; ``scores``: CLIP-T."""
        rows = []
        with self._state:
            self.state["batches"] += 1
            batch = self.state["batches"]
            if source is not None:
                fields = fields | {"input": runs.new_file(self.state, "restyle")}
                save_png(self.dir / fields["input"], source)
            for k, im in enumerate(images):
                name = runs.new_file(self.state, "images")
                row = {"id": int(Path(name).stem), "file": name, "seed": seed + k, "batch": batch} | fields | (
                    {"clip_t": round(scores[k], 4)} if scores else {})
                save_png(self.dir / name, im)
                self.state["images"].append(row)
                rows.append(row)
            self._save()
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
        self._check_sampling(style_round, False)
        (picture,), _ = self._decode_all([(name, data)])

        def make():
            style, number = self._style(style_round)
            text = style_prompt(prompt.strip() or "a picture", self.state["descriptor"])
            d = self.defaults
            images, _ = run(self.base, [picture] * n, [text] * n, self._sample_config(seed), rc, style,
                            d["lambda_a"], d["lambda_b"])
            return self._add_batch(images, {"prompt": text, "round": number, "subject": False, "strength": strength,
                                            "lambda_a": d["lambda_a"], "lambda_b": d["lambda_b"],
                                            "steps": d["sample_steps"]}, seed, source=picture)

        rows = self._submit_sampling("restyle", n, make)
        return f"/api/files/{rows[0]['input']}", rows

    def cancel(self, job_id: int | None = None) -> dict:
        """Stop the running training at its next step, or take a waiting job out of the queue."""
        return self.queue.cancel(job_id).public()

    def set_picks(self, ids: list[int]) -> list[int]:
        with self._state:
            known = {r["id"] for r in self.state["images"]}
            missing = [i for i in ids if i not in known]
            if missing:
                raise UserError(f"unknown image ids: {missing[:10]}")
            self.state["picks"] = sorted(set(ids))
            self._save()
            return list(self.state["picks"])

    def pick_by_clip(self) -> list[int]:
        """Tick the best picture of each generated batch by CLIP-T (the paper's CLIP feedback), as well as
        those already ticked."""
        if self.scorer is None:
            raise UserError("no CLIP scorer: start the studio with --scorer PATH (a transformers CLIPModel folder) "
                            "or tick pictures by hand")
        with self._state:
            best: dict[int, dict] = {}
            for r in self.state["images"]:
                if "clip_t" in r and r["clip_t"] > best.get(r["batch"], {"clip_t": -2.0})["clip_t"]:
                    best[r["batch"]] = r
            if not best:
                raise UserError("generate some pictures first: CLIP ticks the best of each batch")
            return self.set_picks(sorted(set(self.state["picks"]) | {r["id"] for r in best.values()}))

    # what the page shows ----------------------------------------------------------------------
    def file(self, name: str) -> Path | None:
        """A picture of the current run by its relative name (``images/3.png``), or None: only the run's own
        picture folders are served."""
        parts = name.split("/")
        if len(parts) != 2 or parts[0] not in ("references", "subject", "images", "restyle") \
                or not parts[1].endswith(".png") or not parts[1][:-4].isdigit():
            return None
        path = self.dir / parts[0] / parts[1]
        return path if path.is_file() else None

    def adapter_file(self, which: str = "style", number: int | None = None) -> tuple[Path, str]:
        with self._state:
            if which == "subject":
                if self.state["subject"] is None:
                    raise UserError("no subject adapter trained yet")
                return self.dir / self.state["subject"]["file"], "styledrop-subject.safetensors"
            number = int(self.state["round"]) if number is None else number
            if str(number) not in self.state["rounds"]:
                raise UserError("no adapter trained yet" if not self.state["rounds"] else
                                f"no round {number}; trained rounds: {sorted(self._adapters)}")
            return self.dir / self.state["rounds"][str(number)], f"styledrop-round{number}.safetensors"

    @staticmethod
    def public_image(row: dict) -> dict:
        hidden = ("file", "input")
        out = {k: v for k, v in row.items() if k not in hidden} | {"url": f"/api/files/{row['file']}"}
        return out | ({"input": f"/api/files/{row['input']}"} if "input" in row else {})

    def status(self) -> dict:
        running, waiting = self.queue.snapshot()
        jobs = ([running] if running else []) + waiting
        lefts = [j.left() for j in jobs]
        with self._state:
            s = self.state
            last = s["trainings"][-1] if s["trainings"] else None
            busy = None
            if running is not None:
                busy = running.doing() + (f"; {len(waiting)} waiting" if waiting else "")
            return {"run": s["id"], "references": [f"/api/files/{f}" for f in s["references"]],
                    "subject_images": [f"/api/files/{f}" for f in s["subject_images"]],
                    "round": int(s["round"]), "rounds": sorted(int(r) for r in s["rounds"]),
                    "descriptor": s["descriptor"], "content": s["content"],
                    "adapter": Path(s["rounds"][str(s["round"])]).name if s["rounds"] else None,
                    "subject": s["subject"]["caption"] if s["subject"] else None,
                    "job": last, "trainings": s["trainings"][-8:],
                    "running": running.public() if running else None,
                    "queue": [j.public() | {"position": k + 1} for k, j in enumerate(waiting)],
                    "seconds_left": None if None in lefts else round(sum(lefts), 1),
                    "scorer": self.scorer.name if self.scorer is not None else None, "busy": busy}

    def state_view(self) -> dict:
        """Everything the page shows, so that a reload restores it: status, the gallery, the ticks, the runs."""
        with self._state:
            return self.status() | {"images": [self.public_image(r) for r in self.state["images"]],
                                    "picks": list(self.state["picks"]), "runs": runs.listing(self.workdir),
                                    "settings": self.state["settings"]}

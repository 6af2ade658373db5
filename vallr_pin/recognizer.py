"""A packed model on your own videos: ``Recognizer.from_pretrained(DIR)("clip.mp4")``.

The three steps are the recipe's own code, with the settings the model directory recorded
(:mod:`vallr_pin.packing`):

1. ROI (stage 1): :func:`vallr_pin.video.pipeline.extract_utterance` -- ffmpeg decoding (any container and
   resolution; rotation metadata applied; :mod:`vallr_pin.video.decode`), nearest-frame resampling to the model's frame
   rate (25 fps), landmarks (the model's detector, or precomputed ones), the aligned grey mouth crop. Videos that
   already are mouth crops (``roi_input=True``) are centre-cropped to a square and resized to the ROI size.
2. VSR (stage 5): the training config's evaluation preprocessor (centre crop, normalisation) and
   :class:`vallr_pin.decoding.search.VideoToText` with the decoding options of the packed stage-5 decode.
3. LLM (stage 9, optional): :class:`vallr_pin.llm.refine.Rescorer` or ``Refiner`` with the packed prompt, fusion
   weights and output guard, in batches over the videos of one call.

A video that cannot be read gets a result with ``failure`` set (``"<code>: <what to do>"``) instead of an
exception, so one bad file never stops a batch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from vallr_pin.packing import ModelDirError, check_llm_matches, decode_kwargs, load_manifest, manifest_paths, \
    resolve_model_dir
from vallr_pin.video.pipeline import RoiConfig, UtteranceFailed, extract_utterance

PathLike = Union[str, os.PathLike]


@dataclasses.dataclass
class RecognitionResult:
    """What one video reads as. ``text``: the final transcript (LLM-refined when an LLM ran and its answer passed
    the guard, else the VSR 1-best); ``nbest``: [{text, score}] of the VSR beam, best first, scores rounded to 4
    decimals as in stage 5's nbest.jsonl; ``llm``: {text, raw, reason (None: accepted, else the guard's
    fallback reason), mode} or None; ``failure``: None, or "<code>: <reason>"; ``timings``: wall seconds of
    roi / vsr / llm (the LLM batch's time shared equally by its videos)."""

    utt: str
    video: str
    text: str = ""
    pinyin: str = ""
    nbest: List[Dict] = dataclasses.field(default_factory=list)
    onebest: str = ""
    llm: Optional[Dict] = None
    failure: Optional[str] = None
    frames: int = 0
    fps: float = 25.0
    source_fps: Optional[float] = None
    source_frames: Optional[int] = None
    note: str = ""
    timings: Dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def failure_code(self) -> Optional[str]:
        return None if self.failure is None else self.failure.split(":", 1)[0]

    def to_dict(self) -> Dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


@dataclasses.dataclass
class VideoInput:
    """One video to recognise: ``utt`` names it in the outputs; ``landmarks``: a float (T, 5, 2) ``.npy``
    (SPEC order, pixels of the source frames, T = source or output frame count) instead of the detector."""

    video: str
    utt: Optional[str] = None
    landmarks: Optional[str] = None

    def __post_init__(self):
        if self.utt is None:
            self.utt = Path(self.video).stem


class _OneLandmarks:
    """The :class:`~vallr_pin.video.landmarks.PrecomputedLandmarks` interface for one video's ``.npy``."""

    def __init__(self, path: str):
        self.path = path

    def load(self, utt: str) -> np.ndarray:
        from vallr_pin.video.landmarks import NUM_POINTS

        try:
            lm = np.load(self.path)
        except Exception as e:
            raise ValueError(f"cannot load landmarks '{self.path}': {e}")
        if lm.ndim != 3 or lm.shape[1:] != (NUM_POINTS, 2):
            raise ValueError(f"landmarks '{self.path}' have shape {lm.shape}, expected (T, 5, 2)")
        return lm.astype(np.float32, copy=False)


MIN_FRAMES = 2  # fewer frames than this is no speech to read (and below the frontend's temporal context)


class Recognizer:
    """A packed model: ROI extraction, VSR decoding and (optionally) LLM refinement with the recipe's settings.

    Args:
        model_dir: a directory written by ``vallr_pin.bin.pack_model`` (or its ``--archive``).
        llm_model: the base LLM directory; default: the path recorded at packing time if it still exists.
            Checked against the adapter's base model (config.json hash); a mismatch is a ModelDirError.
        use_llm: False: VSR only; None (default): refine when the model has an adapter and a base LLM is found.
        device: ``cpu`` (default) or ``cuda`` for the VSR model.
        detector: landmark detector name instead of the packed one (``vallr_pin.video.landmarks``).
        threads: torch CPU threads (0: torch's default).
    """

    def __init__(self, model_dir: PathLike, llm_model: Optional[PathLike] = None, use_llm: Optional[bool] = None,
                 device: str = "cpu", detector: Optional[str] = None, threads: int = 0):
        self.model_dir = resolve_model_dir(model_dir)
        self.manifest = load_manifest(self.model_dir)
        self.paths = manifest_paths(self.model_dir, self.manifest)
        roi = self.manifest["roi"]
        self.roi = RoiConfig(**{k: roi[k] for k in RoiConfig.OUTPUT_FIELDS if k in roi},
                             detector=detector or roi["detector"])
        llm = self.manifest.get("llm")
        self.llm_model = None
        if use_llm is not False and llm:
            path = llm_model or llm["base_model"].get("path")
            if path and Path(path).is_dir():
                check_llm_matches(path, llm["base_model"])
                self.llm_model = str(path)
            elif use_llm or llm_model:
                raise ModelDirError(f"base LLM '{path}' not found; pass the directory of "
                                    f"{llm['base_model']['name']} with --llm-model, or --no-llm")
            else:
                logging.warning("%s: the base LLM %s is not at %s; recognising without LLM refinement (pass "
                                "--llm-model)", self.model_dir, llm["base_model"]["name"], path)
        elif use_llm and not llm:
            raise ModelDirError(f"{self.model_dir}: packed without an LLM adapter; drop --llm-model or re-pack "
                                "with --llm-exp")
        self.device = device
        self.threads = threads
        self._detector = None
        self._vsr = None
        self._pre = None
        self._llm = None

    @classmethod
    def from_pretrained(cls, model_dir: PathLike, **kwargs) -> "Recognizer":
        """Load a packed model (see the class arguments)."""
        return cls(model_dir, **kwargs)

    # -- lazily built parts: a --help or a bad model dir never waits for torch/ESPnet/ms-swift imports
    @property
    def vsr(self):
        if self._vsr is None:
            import torch

            from vallr_pin.decoding.search import VideoToText
            from vallr_pin.tasks.vsr import VSRTask

            if self.threads:
                torch.set_num_threads(self.threads)
            lm = {f"lm_{k}": str(self.paths[f"lm_{k}"]) for k in ("config", "file") if f"lm_{k}" in self.paths}
            self._vsr = VideoToText(train_config=str(self.paths["config"]), model_file=str(self.paths["model_file"]),
                                    device=self.device, lm_train_config=lm.get("lm_config"), lm_file=lm.get("lm_file"),
                                    **decode_kwargs(self.manifest["decode"]))
            self._pre = VSRTask.build_preprocess_fn(self._vsr.train_args, train=False)
        return self._vsr

    @property
    def detector(self):
        if self._detector is None:
            from vallr_pin.video.pipeline import make_detector

            self._detector = make_detector(self.roi)
        return self._detector

    @property
    def refiner(self):
        """Stage 9's refiner with the packed settings, or None without an LLM."""
        if self._llm is None and self.llm_model:
            from vallr_pin.llm.fusion import FusionWeights
            from vallr_pin.llm.guard import OutputGuard
            from vallr_pin.llm.prompt import PromptTemplate
            from vallr_pin.llm.refine import Refiner, Rescorer, make_engine

            llm = self.manifest["llm"]
            swift = llm.get("swift") or {}
            engine = make_engine(self.llm_model, str(self.paths["adapter"]), llm.get("backend", "transformers"),
                                 swift.get("model_type"), swift.get("template"), None, llm.get("batch_size", 16))
            guard = OutputGuard(**llm["guard"])
            prompt = llm["prompt"]
            common = dict(lang=prompt["lang"], template=PromptTemplate(system=prompt["system"], user=prompt["user"]),
                          max_candidates=prompt["max_candidates"], batch_size=llm.get("batch_size", 16))
            if llm["mode"] == "rescore":
                self._llm = Rescorer(engine, guard, weights=FusionWeights(**llm["fusion"]), **common)
            else:
                self._llm = Refiner(engine, guard, **common, **(llm.get("generate") or {}))
        return self._llm

    def load(self) -> None:
        """Build the VSR model (and the LLM engine) now, so that the timings of the first video do not include it."""
        _ = self.vsr
        _ = self.refiner

    def __call__(self, video: PathLike, utt: Optional[str] = None, landmarks: Optional[PathLike] = None,
                 roi_input: bool = False) -> RecognitionResult:
        """Recognise one video file."""
        return self.recognize([VideoInput(str(video), utt, None if landmarks is None else str(landmarks))],
                              roi_input=roi_input)[0]

    def recognize(self, inputs: Sequence[Union[VideoInput, PathLike]], roi_input: bool = False,
                  save_roi: Optional[PathLike] = None, progress: bool = False) -> List[RecognitionResult]:
        """Results in the order of ``inputs``; the LLM refines the recognised ones in one batched call."""
        from tqdm import tqdm

        items = [x if isinstance(x, VideoInput) else VideoInput(str(x)) for x in inputs]
        self.load()
        results = []
        for item in tqdm(items, desc="recognize", unit="video", disable=not progress, dynamic_ncols=True):
            res = self._roi_and_vsr(item, roi_input, save_roi)
            results.append(res)
        self._refine([r for r in results if r.ok])
        return results

    def _roi_and_vsr(self, item: VideoInput, roi_input: bool, save_roi: Optional[PathLike]) -> RecognitionResult:
        res = RecognitionResult(utt=item.utt, video=item.video, fps=float(self.roi.fps))
        t0 = time.perf_counter()
        try:
            feats = self.extract_roi(item, roi_input, res)
        except UtteranceFailed as e:
            res.failure = " ".join(str(e).split())
            res.timings["roi"] = round(time.perf_counter() - t0, 4)
            return res
        res.timings["roi"] = round(time.perf_counter() - t0, 4)
        if save_roi:
            from vallr_pin.video.pipeline import write_roi_video

            write_roi_video(Path(save_roi) / f"{item.utt}.mp4", feats, self.roi.fps)
        t1 = time.perf_counter()
        try:
            self.decode(feats, res)
        except Exception as e:  # one video's model error must not stop the batch
            logging.debug("%s: decoding failed", item.utt, exc_info=True)
            res.failure = " ".join(f"vsr_error: {type(e).__name__}: {e}".split())[:300]
        res.timings["vsr"] = round(time.perf_counter() - t1, 4)
        return res

    def extract_roi(self, item: VideoInput, roi_input: bool, res: RecognitionResult) -> np.ndarray:
        """uint8 (T, roi*roi) at the model's frame rate, as stage 1 makes it; fills the frame-rate fields."""
        path = item.video
        if not os.path.exists(path):
            raise UtteranceFailed(f"missing_file: {path} does not exist; check the path")
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            raise UtteranceFailed(f"empty_file: {path} has 0 bytes; re-copy it")
        info: Dict = {}
        if roi_input:
            from vallr_pin.video.pipeline import roi_from_crop_video

            feats = roi_from_crop_video(path, self.roi, info)
        else:
            pre = _OneLandmarks(item.landmarks) if item.landmarks else None
            feats = extract_utterance(item.utt, path, self.roi, None if pre else self.detector, pre, info=info)
        res.source_fps = round(float(info["source_fps"]), 3)
        res.source_frames = int(info["source_frames"])
        res.frames = int(feats.shape[0])
        if abs(info["source_fps"] - self.roi.fps) >= 0.01:
            res.note = (f"resampled from {res.source_fps:g} to {self.roi.fps:g} fps (nearest frame, as stage 1): "
                        f"{res.source_frames} -> {res.frames} frames")
        if feats.shape[0] < MIN_FRAMES:
            raise UtteranceFailed(f"too_short: {feats.shape[0]} frame(s) at {self.roi.fps:g} fps; the model needs "
                                  f"at least {MIN_FRAMES} (a clip of speech is longer)")
        return feats

    def decode(self, feats: np.ndarray, res: RecognitionResult) -> None:
        """Stage 5 on one ROI: evaluation preprocessing, beam search, pinyin; fills nbest/onebest/pinyin/text."""
        import torch

        vsr = self.vsr
        video = torch.from_numpy(self._pre(res.utt, {"video": feats})["video"]).unsqueeze(0)
        rec = vsr(video, torch.tensor([video.size(1)]))[0]
        # what stage 5's nbest.jsonl holds, so stage 9 and the LLM here see the same numbers
        res.nbest = [{"text": t, "score": round(s, 4)} for t, _, s in rec.nbest]
        res.onebest = rec.nbest[0][0] if rec.nbest else ""
        res.pinyin = rec.pinyin
        res.text = res.onebest

    def _refine(self, results: Sequence[RecognitionResult]) -> None:
        if not results or not self.llm_model:
            return
        from vallr_pin.llm.nbest import NbestEntry

        entries = [NbestEntry(utt=r.utt, texts=["".join(h["text"].split()) for h in r.nbest],
                              scores=[float(h["score"]) for h in r.nbest], pinyin=" ".join(r.pinyin.split()), ref=None)
                   for r in results]
        t0 = time.perf_counter()
        refined = self.refiner.refine(entries, progress=False)
        share = round((time.perf_counter() - t0) / len(results), 4)
        for r, f in zip(results, refined):
            r.llm = {"text": f.text, "raw": f.raw, "reason": f.reason, "mode": self.manifest["llm"]["mode"]}
            r.text = f.text
            r.timings["llm"] = share

    def close(self) -> None:
        if self._detector is not None and hasattr(self._detector, "close"):
            self._detector.close()
        self._detector = None

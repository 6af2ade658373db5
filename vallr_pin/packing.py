"""Self-contained model directories: what ``vallr_pin.bin.pack_model`` writes and :class:`vallr_pin.Recognizer` loads.

A model directory holds everything needed to turn a video into text the way the recipe did, and nothing that
points back into the recipe::

    model.yaml            the manifest (FORMAT_VERSION): the crop settings of stage 1 (``roi``), the decoding
                          options of stage 5 (``decode``), the VSR files (``vsr``) and, when packed with an LLM,
                          the adapter, the base LLM's name and config hash, prompt, fusion weights and guard (``llm``)
    meta.yaml             ESPnet's pack metadata (files, yaml_files, timestamp, python, torch, espnet), as
                          ``espnet2.main_funcs.pack_funcs.pack`` writes it
    vsr/config.yaml       the training config (both token lists inline, preprocessor_conf: crop and normalisation)
    vsr/model.pth         the chosen checkpoint
    vsr/char_tokens.txt, vsr/pinyin_tokens.txt   the token lists, one per line (for reading; config.yaml rules)
    lm/config.yaml, lm/model.pth   the character LM stage 5 fused (vsr.sh --use_lm true), when it did
    llm/adapter/          the LoRA adapter (adapter_config.json, weights, ms-swift's args.json) -- not the base LLM
    RESULTS.md            the recipe's results, as they were when packing
    README.md             the model card: training data, CER, how to run it

Paths inside ``model.yaml`` are relative to the directory. ``--archive`` packs the directory into one .zip/.tar.gz
with ESPnet's ``pack`` (unpacked again with ESPnet's ``unpack`` by :func:`resolve_model_dir`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Dict, Optional, Union

import yaml

PathLike = Union[str, os.PathLike]

FORMAT_VERSION = 1
# Keys every model.yaml of this format has; a missing one means another vallr-pin version wrote the directory.
REQUIRED_KEYS = (
    "format_version", "vsr.config", "vsr.model_file", "roi.roi_size", "roi.mouth_width_frac", "roi.smooth_window",
    "roi.fps", "roi.detector", "decode.beam_size", "decode.ctc_weight", "decode.nbest",
)
LLM_REQUIRED_KEYS = ("llm.adapter", "llm.base_model.name", "llm.base_model.config_sha256", "llm.mode",
                     "llm.prompt.system", "llm.prompt.user", "llm.prompt.max_candidates", "llm.guard",
                     "llm.fusion")


class ModelDirError(ValueError):
    """A model directory (or the LLM given with it) cannot be used; the message is one line saying what to do."""


def _get(conf: Dict, dotted: str):
    cur = conf
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise KeyError(dotted)
        cur = cur[part]
    return cur


def config_sha256(config: Dict) -> str:
    """Hash of a Hugging Face ``config.json`` as a canonical JSON (key order and whitespace do not count)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def read_llm_config(llm_dir: PathLike) -> Dict:
    path = Path(llm_dir) / "config.json"
    if not path.is_file():
        raise ModelDirError(f"LLM '{llm_dir}' has no config.json; pass the base model directory with --llm-model")
    return json.loads(path.read_text(encoding="utf-8"))


# Entries of config.json that do not change what the weights compute (where and how it was saved).
_VOLATILE_LLM_KEYS = ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "use_cache")


def check_llm_matches(llm_dir: PathLike, base: Dict) -> None:
    """Raise :class:`ModelDirError` naming the differing keys when ``llm_dir`` is not the adapter's base model."""
    given = read_llm_config(llm_dir)
    expected = base.get("config") or {}
    strip = (lambda c: {k: v for k, v in c.items() if k not in _VOLATILE_LLM_KEYS})
    if config_sha256(strip(given)) == base["config_sha256"]:
        return
    diff = sorted(k for k in set(strip(given)) | set(strip(expected)) if given.get(k) != expected.get(k))
    shown = ", ".join(f"{k}: {given.get(k)!r} (adapter's base: {expected.get(k)!r})" for k in diff[:3])
    more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
    raise ModelDirError(
        f"LLM '{llm_dir}' is not the base model the adapter was trained on ({base['name']}): config.json differs "
        f"in {shown or 'its content'}{more}; pass that model with --llm-model, or --no-llm"
    )


def llm_base_entry(llm_dir: PathLike) -> Dict:
    """``llm.base_model`` of model.yaml: name, the path at packing time, config hash (weights are not packed)."""
    conf = read_llm_config(llm_dir)
    strip = {k: v for k, v in conf.items() if k not in _VOLATILE_LLM_KEYS}
    name = conf.get("_name_or_path") or Path(llm_dir).resolve().name
    return {"name": str(Path(name).name), "path": str(Path(llm_dir).resolve()), "config_sha256": config_sha256(strip),
            "config": strip}


def load_manifest(model_dir: PathLike) -> Dict:
    """model.yaml of ``model_dir``, checked for this format; :class:`ModelDirError` names what is missing."""
    model_dir = Path(model_dir)
    path = model_dir / "model.yaml"
    if not path.is_file():
        raise ModelDirError(f"{model_dir}: no model.yaml; this is not a packed vallr-pin model (make one with "
                            "python -m vallr_pin.bin.pack_model)")
    conf = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    keys = REQUIRED_KEYS + (LLM_REQUIRED_KEYS if isinstance(conf, dict) and conf.get("llm") else ())
    for key in keys:
        try:
            _get(conf, key)
        except KeyError:
            raise ModelDirError(
                f"{path}: no '{key}' (format {conf.get('format_version', '?')} from vallr-pin "
                f"{conf.get('vallr_pin_version', '?')}; this version reads format {FORMAT_VERSION}); re-pack the "
                "model with this version's python -m vallr_pin.bin.pack_model") from None
    if conf["format_version"] != FORMAT_VERSION:
        raise ModelDirError(f"{path}: format_version {conf['format_version']}, this vallr-pin reads "
                            f"{FORMAT_VERSION}; re-pack the model with this version's python -m vallr_pin.bin.pack_model")
    for key in (("vsr.config", "vsr.model_file") + (("lm.config", "lm.model_file") if conf.get("lm") else ())
                + (("llm.adapter",) if conf.get("llm") else ())):
        if not (model_dir / _get(conf, key)).exists():
            raise ModelDirError(f"{model_dir}: {key} '{_get(conf, key)}' is missing from the directory; re-pack it")
    return conf


def resolve_model_dir(path: PathLike, cache_dir: Optional[PathLike] = None) -> Path:
    """A model directory, or a .zip/.tar.gz made by ``pack_model --archive`` unpacked with ESPnet's ``unpack``
    (into ``cache_dir``, default ``<archive>.d`` beside it; an unpacked copy is reused)."""
    path = Path(path)
    if path.is_dir():
        return path
    if not path.is_file():
        raise ModelDirError(f"model '{path}' does not exist; give the directory pack_model wrote (--out)")
    from espnet2.main_funcs.pack_funcs import unpack

    out = Path(cache_dir) if cache_dir else path.with_name(path.name + ".d")
    if not (out / "model.yaml").is_file():
        try:
            with contextlib.redirect_stdout(sys.stderr):
                unpack(path, out, use_cache=False)
        except Exception as e:
            raise ModelDirError(f"model '{path}': not a pack_model archive ({e})") from None
    return out


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def find_decode_options(exp: Path, model_file: Path) -> Optional[Dict]:
    """The options stage 5 decoded ``model_file`` with: the ``.done`` marker of a decoding job under ``exp`` whose
    model has the same content (vallr_pin.decoding.jobs.signature). None when no such job exists."""
    digest = _sha1(model_file)
    # stage 5's decode of this checkpoint (decode_<conf>_<checkpoint name>) first: stage 6 may have decoded the
    # same weights under another name (a kept epoch the average links to) with its own N-best options
    dones = sorted(exp.glob("decode_*/*/logdir/output.*/.done"))
    dones.sort(key=lambda d: not d.parent.parent.parent.parent.name.endswith("_" + model_file.stem))
    for done in dones:
        try:
            sig = json.loads(done.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if (sig.get("model_file") or [None, None, None])[2] == digest:
            return dict(sig["options"], source=str(done))
    return None


def read_roi_conf(train_config: Dict) -> Dict:
    """Stage 1's settings of the training data (``roi_conf.json`` beside its feats.scp)."""
    scp = next((p for p, name, _ in train_config.get("train_data_path_and_name_and_type", []) if name == "video"), None)
    if scp is None:
        raise ModelDirError("the train config has no 'video' entry in train_data_path_and_name_and_type")
    path = Path(scp).parent / "roi_conf.json"
    if not path.is_file():
        raise ModelDirError(f"{path} does not exist (stage 1 of this version writes it); re-run stage 1 of the "
                            "recipe, or give the crop settings with --roi-conf FILE")
    return json.loads(path.read_text(encoding="utf-8"))


def score_summaries(exp: Path, model_file: Path) -> Dict[str, Dict]:
    """CER of every scored stage-5 decode of ``model_file``: {set: summary.json}, from decode_*_<ckpt>/<set>/."""
    out = {}
    for summary in sorted(exp.glob(f"decode_*_{model_file.stem}/*/score_cer/summary.json")):
        with contextlib.suppress(ValueError):
            out[summary.parent.parent.name] = json.loads(summary.read_text(encoding="utf-8"))
    return out


def _lm_files(decode: Dict):
    """(config, checkpoint) of the character LM stage 5 fused (``lm_weight`` > 0), taken out of ``decode``; the
    checkpoint must still be the one it decoded with. None without an LM."""
    config, model = decode.pop("lm_train_config", None), decode.pop("lm_file", None)
    if not decode.get("lm_weight"):
        return None
    if not config or not model:
        raise ModelDirError(f"the decoding options set lm_weight {decode['lm_weight']} but name no LM; pack from "
                            "a stage-5 decode (it records its LM), or set lm_weight: 0")
    paths = [Path(x[0] if isinstance(x, list) else x) for x in (config, model)]
    for path in paths:
        if not path.is_file():
            raise ModelDirError(f"the LM stage 5 decoded with, {path}, is gone; re-run stages 4-5 (--use_lm true)")
    if isinstance(model, list) and _sha1(paths[1]) != model[2]:
        raise ModelDirError(f"{paths[1]} changed since stage 5 decoded with it; re-run stage 5 before packing")
    return paths


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def pack_model_dir(out: PathLike, exp: PathLike, model_file: Optional[PathLike] = None,
                   decode: Optional[Dict] = None, roi: Optional[Dict] = None, llm_exp: Optional[PathLike] = None,
                   llm_model: Optional[PathLike] = None, refine_dir: Optional[PathLike] = None,
                   results: Optional[PathLike] = None, archive: Optional[PathLike] = None) -> Path:
    """Write the model directory ``out`` (replaced atomically: built beside it, then renamed). See the module
    docstring for the layout and ``vallr_pin.bin.pack_model --help`` for the arguments."""
    from vallr_pin import __version__

    exp, out = Path(exp), Path(out)
    train_config_path = exp / "config.yaml"
    if not train_config_path.is_file():
        raise ModelDirError(f"{train_config_path} does not exist; --exp must be a trained exp/vsr_<tag> directory")
    model_file = Path(model_file) if model_file else exp / "valid.acc_char.ave.pth"
    if not model_file.is_file() and (exp / model_file).is_file():
        model_file = exp / model_file
    if not model_file.is_file():
        raise ModelDirError(f"checkpoint {model_file} does not exist; give --model-file (e.g. exp/vsr_dual/"
                            "valid.acc_char.ave.pth or ckpt_keep/20epoch.pth)")
    from vallr_pin.cli import load_yaml

    train_config = load_yaml(train_config_path, "training config", hint="--exp must be a trained exp/vsr_<tag>")
    if decode is None:
        decode = find_decode_options(exp, model_file)
        if decode is None:
            raise ModelDirError(f"no stage-5 decode of {model_file} under {exp} to take the decoding options from; "
                                "run stage 5, or give --decode-config conf/decode_vsr.yaml")
    if roi is None:
        roi = read_roi_conf(train_config)
    roi = dict(roi)
    roi["training_landmarks"] = "precomputed" if roi.get("detector") is None else "detector"
    roi["detector"] = roi.get("detector") or "mediapipe"

    manifest: Dict = {
        "format_version": FORMAT_VERSION,
        "vallr_pin_version": __version__,
        "packed": {"exp": str(exp.resolve()), "model_file": str(model_file.absolute()),
                   "date": datetime.now().isoformat(timespec="seconds"), "decode_options_from": decode.pop("source", None)},
        "vsr": {"config": "vsr/config.yaml", "model_file": "vsr/model.pth", "char_token_list": "vsr/char_tokens.txt",
                "pinyin_token_list": "vsr/pinyin_tokens.txt" if train_config.get("pinyin_token_list") else None},
        "roi": roi,
        "decode": decode,
        "lm": None,
        "llm": None,
    }
    lm_files = _lm_files(decode)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _copy(train_config_path, tmp / "vsr" / "config.yaml")
        _copy(model_file, tmp / "vsr" / "model.pth")
        for key, name in (("token_list", "char_tokens.txt"), ("pinyin_token_list", "pinyin_tokens.txt")):
            tokens = train_config.get(key)
            if isinstance(tokens, list):
                (tmp / "vsr" / name).write_text("".join(f"{t}\n" for t in tokens), encoding="utf-8")
            elif isinstance(tokens, str) and Path(tokens).is_file():
                _copy(Path(tokens), tmp / "vsr" / name)
        if lm_files is not None:
            _copy(lm_files[0], tmp / "lm" / "config.yaml")
            _copy(lm_files[1], tmp / "lm" / "model.pth")
            manifest["lm"] = {"config": "lm/config.yaml", "model_file": "lm/model.pth"}
        if llm_exp is not None:
            manifest["llm"] = _pack_llm(tmp, Path(llm_exp), llm_model, refine_dir)
        results = Path(results) if results else Path("RESULTS.md")
        if results.is_file():
            _copy(results, tmp / "RESULTS.md")
        summaries = score_summaries(exp, model_file)
        with open(tmp / "model.yaml", "w", encoding="utf-8") as f:
            yaml.safe_dump(manifest, f, allow_unicode=True, sort_keys=False)
        (tmp / "README.md").write_text(model_card(manifest, train_config, summaries, out.name), encoding="utf-8")
        _write_espnet_meta(tmp)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if archive:
        pack_archive(out, Path(archive))
    return out


def _pack_llm(tmp: Path, llm_exp: Path, llm_model: Optional[PathLike], refine_dir: Optional[PathLike]) -> Dict:
    """Copy the adapter and record everything stage 9 used for the fine-tuned refinement."""
    adapter = llm_exp / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        raise ModelDirError(f"{adapter} holds no adapter_config.json; run stage 8, or pack without --llm-exp")
    for f in adapter.resolve().iterdir():
        if f.is_file() and (f.name.startswith("adapter_") or f.name in ("args.json", "README.md")):
            _copy(f, tmp / "llm" / "adapter" / f.name)
    if not (tmp / "llm" / "adapter" / "args.json").exists() and (adapter.resolve().parent / "args.json").is_file():
        _copy(adapter.resolve().parent / "args.json", tmp / "llm" / "adapter" / "args.json")
    refine_dir = Path(refine_dir) if refine_dir else _find_refine_dir(llm_exp)
    stats = json.loads((refine_dir / "guard_stats.json").read_text(encoding="utf-8"))
    fusion_path = refine_dir / "fusion.json"
    fusion = json.loads(fusion_path.read_text(encoding="utf-8"))["weights"] if fusion_path.is_file() \
        else stats.get("fusion") or {"llm_weight": 1.0, "vsr_weight": 0.0, "length_bonus": 0.0}
    if llm_model is None:
        llm_model = stats.get("model")
    if not llm_model or not Path(llm_model).is_dir():
        raise ModelDirError(f"base LLM '{llm_model}' not found; give --llm-model (its name and config hash are "
                            "recorded, not its weights)")
    from vallr_pin.llm.prompt import load_template
    from vallr_pin.llm.refine import adapter_swift_args

    prompt = stats.get("prompt") or {}
    template = load_template(prompt.get("template"), prompt.get("lang", "zh"))
    return {
        "adapter": "llm/adapter",
        "base_model": llm_base_entry(llm_model),
        "swift": adapter_swift_args(str(tmp / "llm" / "adapter")),
        "mode": stats.get("mode", "generate"),
        "backend": stats.get("backend", "transformers"),
        "batch_size": stats.get("batch_size", 16),
        "fusion": fusion,
        "guard": stats.get("guard", {}),
        "generate": {k: stats[k] for k in ("max_new_ratio", "max_new_slack") if k in stats},
        "prompt": {"lang": prompt.get("lang", "zh"), "max_candidates": prompt.get("max_candidates", 5),
                   "system": template.system, "user": template.user},
        "settings_from": str(refine_dir),
    }


def _find_refine_dir(llm_exp: Path) -> Path:
    """Stage 9's fine-tuned refinement whose settings are packed: the one fusion weights were tuned on, else any."""
    dirs = sorted(d.parent for d in llm_exp.glob("refine_finetuned/*/guard_stats.json"))
    if not dirs:
        raise ModelDirError(f"no {llm_exp}/refine_finetuned/<set>/guard_stats.json (stage 9); run stage 9 or give "
                            "--refine-dir")
    for d in dirs:
        fusion = d / "fusion.json"
        if fusion.is_file() and Path(json.loads(fusion.read_text(encoding="utf-8")).get("tuned_on", "")).name == d.name:
            return d
    return dirs[0]


def _write_espnet_meta(model_dir: Path) -> None:
    """meta.yaml as ESPnet's ``pack`` writes it, listing the packed files relative to the directory."""
    import espnet
    import torch

    files = {"vsr_model_file": "vsr/model.pth"}
    if (model_dir / "lm" / "model.pth").is_file():
        files["lm_file"] = "lm/model.pth"
    files.update({f"llm_{p.name}": str(p.relative_to(model_dir)) for p in sorted((model_dir / "llm").rglob("*"))
                  if p.is_file()} if (model_dir / "llm").is_dir() else {})
    yaml_files = {"vsr_train_config": "vsr/config.yaml", "manifest": "model.yaml"}
    if (model_dir / "lm" / "config.yaml").is_file():
        yaml_files["lm_train_config"] = "lm/config.yaml"
    meta = {"files": files, "yaml_files": yaml_files,
            "timestamp": datetime.now().timestamp(), "python": sys.version, "torch": str(torch.__version__),
            "espnet": espnet.__version__}
    with open(model_dir / "meta.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump(meta, f)


def pack_archive(model_dir: Path, archive: Path) -> Path:
    """One .zip/.tar.gz/.tgz of ``model_dir`` with ESPnet's ``pack`` (its own meta.yaml at the top)."""
    from espnet2.main_funcs.pack_funcs import pack

    archive = archive.resolve()
    meta = yaml.safe_load((model_dir / "meta.yaml").read_text(encoding="utf-8"))
    others = [str(p.relative_to(model_dir)) for p in sorted(model_dir.rglob("*")) if p.is_file()
              and p.name != "meta.yaml" and str(p.relative_to(model_dir)) not in
              set(meta["files"].values()) | set(meta["yaml_files"].values())]
    cwd = os.getcwd()
    os.chdir(model_dir)  # ESPnet's pack stores paths relative to the current directory
    try:
        with contextlib.redirect_stdout(sys.stderr):
            pack(files=meta["files"], yaml_files=meta["yaml_files"], outpath=str(archive), option=others)
    finally:
        os.chdir(cwd)
    return archive


def model_card(manifest: Dict, train_config: Dict, summaries: Dict[str, Dict], name: str) -> str:
    """README.md of a model directory: what it is, what it was trained on, how well it reads, how to run it."""
    data = [p for p, n, _ in train_config.get("train_data_path_and_name_and_type", []) if n == "video"]
    n_train = _count_lines(data[0]) if data else None
    valid = [p for p, n, _ in train_config.get("valid_data_path_and_name_and_type", []) if n == "video"]
    exp = Path(manifest["packed"]["exp"])
    recipe = exp.parent.parent
    lines = [
        f"# {name}: vallr-pin Mandarin lip-reading model",
        "",
        f"Packed by vallr-pin {manifest['vallr_pin_version']} (model format {manifest['format_version']}) on "
        f"{manifest['packed']['date']} from `{exp}` (recipe `{recipe.parent.name}/{recipe.name}`), checkpoint "
        f"`{Path(manifest['packed']['model_file']).name}`.",
        "",
        "## Training data",
        f"- training set: `{data[0] if data else '?'}`" + (f", {n_train} utterances" if n_train is not None else ""),
        f"- validation set: `{valid[0] if valid else '?'}`",
        f"- model: {train_config.get('model', 'dual')} (char weight "
        f"{(train_config.get('model_conf') or {}).get('char_weight', '?')}), encoder "
        f"{train_config.get('encoder', '?')}, {train_config.get('max_epoch', '?')} epochs",
        f"- input: grey mouth crops {manifest['roi']['roi_size']}x{manifest['roi']['roi_size']} at "
        f"{manifest['roi']['fps']} fps (mouth width {manifest['roi']['mouth_width_frac']} of the crop), centre crop "
        f"{(train_config.get('preprocessor_conf') or {}).get('crop_size', '?')}, landmarks in training: "
        f"{manifest['roi']['training_landmarks']}",
        "",
        "## Character error rate (stage 5, this checkpoint and decoding options)",
    ]
    if summaries:
        lines += ["| set | utterances | CER % |", "|---|---|---|"]
        for dset, s in summaries.items():
            cer = s.get("cer")  # vallr_pin.bin.score's summary.json: already a percentage
            cer = f"{cer:.2f}" if isinstance(cer, (int, float)) else "?"
            lines.append(f"| {dset} | {s.get('n_sent', '?')} | {cer} |")
    else:
        lines.append("No scored decode of this checkpoint was found when packing.")
    llm = manifest.get("llm")
    lines += ["", "## LLM refinement"]
    if llm:
        lines.append(f"LoRA adapter for `{llm['base_model']['name']}` (config sha256 "
                     f"`{llm['base_model']['config_sha256'][:16]}...`; the base weights are not included), mode "
                     f"`{llm['mode']}`, fusion {llm['fusion']}. See RESULTS.md for the refined CER.")
    else:
        lines.append("None packed: recognition is the VSR model's N-best alone.")
    lines += [
        "", "## Use", "```",
        f"python -m vallr_pin.bin.recognize --model {name}" + (" --llm-model /path/to/base_llm" if llm else "")
        + " clip1.mp4 clip2.mov > out.jsonl",
        "```", "```python", "from vallr_pin import Recognizer",
        f"result = Recognizer.from_pretrained('{name}')('clip.mp4')", "print(result.text)", "```", "",
    ]
    return "\n".join(lines)


def _count_lines(path: str) -> Optional[int]:
    with contextlib.suppress(OSError):
        with open(path, encoding="utf-8") as f:
            return sum(1 for line in f if line.strip())
    return None


def manifest_paths(model_dir: Path, conf: Dict) -> Dict[str, Path]:
    """The files of a loaded manifest as absolute paths."""
    out = {"config": model_dir / conf["vsr"]["config"], "model_file": model_dir / conf["vsr"]["model_file"]}
    if conf.get("lm"):
        out["lm_config"] = model_dir / conf["lm"]["config"]
        out["lm_file"] = model_dir / conf["lm"]["model_file"]
    if conf.get("llm"):
        out["adapter"] = model_dir / conf["llm"]["adapter"]
    return out


def decode_kwargs(decode: Dict) -> Dict:
    """VideoToText keyword arguments from model.yaml's ``decode`` section (vsr_inference option names)."""
    names = ("beam_size", "ctc_weight", "penalty", "maxlenratio", "minlenratio", "nbest", "beam_search_impl",
             "pinyin_decode_mode", "pinyin_beam_size", "pinyin_ctc_weight", "normalize_length",
             "pinyin_rescore_weight", "lm_weight", "pinyin_search_weight", "pre_beam_ratio")
    return {k: decode[k] for k in names if k in decode}



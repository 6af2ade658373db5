"""show_results: RESULTS.md tables from score_cer/summary.json, n/a for systems not run, marked section kept.
(Intervals and orderings from utt_errors.txt: test_scoring_bootstrap.py.)"""

import json

import pytest

from vallr_pin.bin import show_results
from vallr_pin.scoring.results_table import BEGIN_MARK, END_MARK, System


def _summary(path, cer, s, d, i, n, ser):
    path.mkdir(parents=True, exist_ok=True)
    (path / "summary.json").write_text(json.dumps(
        {"cer": cer, "sub": s, "del": d, "ins": i, "n_ref": n, "ser": ser, "n_sent": 10}), "utf-8")


@pytest.fixture
def exp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for test_set in ("dev", "test"):
        _summary(tmp_path / f"exp/vsr_char/decode_x/{test_set}/score_cer", 30.87, 20, 5, 3, 100, 80.0)
        _summary(tmp_path / f"exp/vsr_dual/decode_x/{test_set}/score_cer", 28.391, 18, 5, 2, 100, 70.0)
    _summary(tmp_path / "exp/llm_lora/refine_test/score_cer", 24.1, 15, 5, 4, 100, 60.0)  # no dev run
    (tmp_path / "paper.yaml").write_text(
        "source: VALLR-Pin paper\ntables:\n  CNVSRC-Multi:\n    char-only: 30.87\n    VALLR-Pin: 28.39\n", "utf-8")
    return tmp_path


ARGS = [
    "--sets", "dev", "test",
    "--system", "char-only (stage I)=exp/vsr_char/decode_x/{set}/score_cer",
    "--system", "dual decoder (stage I)=exp/vsr_dual/decode_x/{set}/score_cer",
    "--system", "dual + zero-shot LLM=exp/llm_zeroshot/refine_{set}/score_cer",
    "--system", "dual + fine-tuned LLM=exp/llm_lora/refine_{set}/score_cer/summary.json",
    "--meta", "model: conf/train_dual.yaml",
    "--paper-ref", "paper.yaml",
]


def test_tables_per_set_with_na_for_systems_not_run(exp, capsys):
    show_results.main(["--out", "RESULTS.md"] + ARGS)
    md = (exp / "RESULTS.md").read_text("utf-8")
    dev, test = md.split("### dev")[1].split("### test")
    assert "|char-only (stage I)|30.87|n/a|20|5|3|100|80.00|" in dev
    assert "|dual decoder (stage I)|28.39|n/a|18|5|2|100|70.00|" in test
    assert "|dual + zero-shot LLM|n/a (not run)|" in dev and "|dual + zero-shot LLM|n/a (not run)|" in test
    assert "|dual + fine-tuned LLM|n/a (not run)|" in dev
    assert "|dual + fine-tuned LLM|24.10|n/a|15|5|4|100|60.00|" in test
    assert "- model: conf/train_dual.yaml" in md
    assert "|VALLR-Pin|28.39|" in md and "VALLR-Pin paper" in md
    assert "|system|CER (%)|95% CI|S|D|I|N|SER (%)|" in md


def test_rerun_replaces_only_its_section(exp):
    (exp / "RESULTS.md").write_text("# mini_cnvsrc\n\nstage 4 took 12 min\n", "utf-8")
    show_results.main(["--out", "RESULTS.md"] + ARGS)
    _summary(exp / "exp/llm_zeroshot/refine_test/score_cer", 29.5, 19, 5, 3, 100, 75.0)
    show_results.main(["--out", "RESULTS.md"] + ARGS)
    md = (exp / "RESULTS.md").read_text("utf-8")
    assert md.startswith("# mini_cnvsrc\n\nstage 4 took 12 min\n")
    assert md.count(BEGIN_MARK) == 1 and md.count(END_MARK) == 1
    assert "|dual + zero-shot LLM|29.50|n/a|19|5|3|100|75.00|" in md


def test_config_file_and_sets_inferred_from_paths(exp):
    (exp / "results.json").write_text(json.dumps({
        "title": "CER on test",
        "systems": [{"label": "char", "path": "exp/vsr_char/decode_x/test/score_cer"},
                    {"label": "llm", "path": "exp/llm_lora/refine_test/score_cer"}],
    }), "utf-8")
    show_results.main(["--out", "R.md", "--config", "results.json"])
    md = (exp / "R.md").read_text("utf-8")
    assert "## CER on test" in md
    # The set is the directory above score_cer: 'test' and 'refine_test' make two tables.
    assert "### test" in md and "|char|30.87|" in md and "### refine_test" in md


def test_bad_system_spec_and_corrupt_summary_are_reported(exp, caplog):
    with pytest.raises(ValueError, match="LABEL=PATH"):
        System.parse("no separator")
    (exp / "exp/vsr_char/decode_x/dev/score_cer/summary.json").write_text("{", "utf-8")
    with pytest.raises(SystemExit):
        show_results.main(["--out", "RESULTS.md"] + ARGS)
    assert "exp/vsr_char/decode_x/dev/score_cer/summary.json" in caplog.text
    assert not (exp / "RESULTS.md").exists()


def test_each_set_says_how_many_utterances_were_scored_and_failed_in_stage_1(exp):
    (exp / "dump/roi/dev").mkdir(parents=True)
    (exp / "dump/roi/dev/failed").write_text(
        "s1_a no_face: no face found in any of 40 frames\ns1_b too_few_frames: 3 frames for 9 characters\n"
        "s2_c no_face: no face found in any of 12 frames\n", "utf-8")
    (exp / "dump/roi/test").mkdir(parents=True)
    (exp / "dump/roi/test/failed").write_text("", "utf-8")
    show_results.main(["--out", "RESULTS.md", *ARGS, "--failed", "dump/roi/{set}/failed",
                       "--set-note", "dev=validation set: model selection uses it"])
    dev, test = (exp / "RESULTS.md").read_text("utf-8").split("### dev")[1].split("### test")
    assert "**validation set: model selection uses it**" in dev
    assert ("10 utterances scored, 3 failed in stage 1 (no_face 2, too_few_frames 1; scored as all deletions)."
            in dev)
    assert "10 utterances scored, 0 failed in stage 1." in test and "validation set" not in test
    # a set whose stage 1 never ran (no failed list) says so instead of claiming 0
    (exp / "dump/roi/test/failed").unlink()
    show_results.main(["--out", "RESULTS.md", *ARGS, "--failed", "dump/roi/{set}/failed"])
    assert "stage 1 failures unknown (no dump/roi/test/failed)" in (exp / "RESULTS.md").read_text("utf-8")
    with pytest.raises(SystemExit):
        show_results.main(["--out", "RESULTS.md", *ARGS, "--set-note", "dev"])


def test_cnvsrc_paper_reference_puts_table_i_under_dev_beside_the_baselines_dev_and_eval():
    """The papers' Table I figures are CNVSRC-Multi.Dev CERs (the 2025 baseline's README: dev 31.91, eval
    31.55); RESULTS.md must not show them as eval figures."""
    from pathlib import Path

    from vallr_pin.scoring.results_table import load_mapping, render_paper_reference

    ref = load_mapping(Path(__file__).resolve().parents[1] / "egs/cnvsrc/vsr1/conf/paper_results.yaml")
    rows = next(t for name, t in ref["tables"].items() if name.startswith("CNVSRC-Multi, S3"))
    assert rows["CNVSRC 2025 baseline (its README)"] == {"dev": 31.91, "eval": 31.55}
    assert rows["VALLR-Pin (dual + fine-tuned LLM), paper"]["dev"] == 28.39
    assert rows["VALLR-Pin (dual + fine-tuned LLM), paper"]["eval"] == "not reported"
    md = render_paper_reference(ref)
    assert "|CNVSRC 2025 baseline (its README)|31.91|31.55|" in md and "|system|dev|eval|" in md
    assert "|CNVSRC 2024 baseline (its README)|52.42|52.20|" in md

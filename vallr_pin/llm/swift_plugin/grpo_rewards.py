"""ms-swift plugin (``swift rlhf --external_plugins <this file>``): registers the rewards of
``vallr_pin.llm.grpo`` in ms-swift's ``orms`` registry as ``vsr_cer_gain`` and ``vsr_format``, so that
``--reward_funcs vsr_cer_gain vsr_format`` (conf/llm_grpo.yaml) finds them.

ms-swift calls a reward with the sampled completions and, as keyword lists, the dataset's extra columns of
the same rows: ``solution`` (the reference) and ``onebest`` (``vallr_pin.llm.grpo.write_grpo_data``).

It also works around an ms-swift 4.6 bug (:func:`patch_empty_completions`): a sampled answer that is empty (the
policy ends its turn at once, which a small or barely tuned LLM does) crashes the GRPO step.
"""

from typing import List

from swift.rewards import ORM, orms

from vallr_pin.llm.grpo import cer_gain_reward, format_reward


class CerGain(ORM):
    """CER(1-best) - CER(answer), each capped at 1."""

    def __call__(self, completions, solution, onebest, **kwargs) -> List[float]:
        return [cer_gain_reward(c, ref, one) for c, ref, one in zip(completions, solution, onebest)]


class OneLineHanzi(ORM):
    """1 for an answer that is one line of Chinese characters, else 0."""

    def __call__(self, completions, **kwargs) -> List[float]:
        return [format_reward(c) for c in completions]


def patch_empty_completions() -> bool:
    """Encode an empty sampled answer with its end-of-turn token, as the policy wrote it.

    ms-swift 4.6 encodes a rollout (``swift/rlhf_trainers/utils.py:encode_sample``) from its response token ids,
    which hold the end-of-turn token, with ``add_eos=False``; an answer that *is* just the end of turn has no
    response ids, so it is encoded from its empty text, without the end-of-turn token, and gets no label at all.
    ``collate_to_grpo_micro_batch`` (``utils.py``, ``logits_to_keep = ... argmax(-1)``) then takes the whole
    sequence as that row's completion, and ``_get_logps_via_local_forward`` fails with "RuntimeError: Size does
    not match at dimension 1 expected index [8, 246, 1] to be no larger than self [8, 245, 3000]". Here such an
    answer is encoded with ``add_eos=True``: its label is the end-of-turn the policy chose, so GRPO can reward or
    penalise stopping at once. Returns False when the installed ms-swift has no such function (nothing patched).
    """
    try:
        from swift.rlhf_trainers import grpo_trainer
    except ImportError:
        return False
    original = getattr(grpo_trainer, "encode_sample", None)
    if original is None or getattr(original, "vallr_pin_patched", False):
        return original is not None

    def encode_sample(sample, template, *, encode_prompt_only: bool = False):
        encoded = original(sample, template, encode_prompt_only=encode_prompt_only)
        labels = encoded.get("labels")
        if (not encode_prompt_only and not sample.response_token_ids and labels is not None
                and all(t == -100 for t in labels)):
            add_eos, sample.add_eos = sample.add_eos, True
            try:
                encoded = original(sample, template, encode_prompt_only=False)
            finally:
                sample.add_eos = add_eos
        return encoded

    encode_sample.vallr_pin_patched = True
    grpo_trainer.encode_sample = encode_sample
    return True


orms["vsr_cer_gain"] = CerGain
orms["vsr_format"] = OneLineHanzi
patch_empty_completions()

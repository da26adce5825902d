"""On CUDA: the reward loader's bf16 + sdpa settings, and batched scoring agreeing with one-by-one scoring.
No gradio or matplotlib here: the GPU machine has neither."""
import pytest
import torch

from core.reward import sequence_rm
from core.models import MODELS
from testing import tiny
from testing.qrm_like import save_qrm_like

PROMPT = "Do wooden pencils contain lead as their core?"
ANSWERS = ["No, graphite.", "Yes, lead. It is lead!", "Let's think step by step. The answer is 42."]


@pytest.mark.gpu
def test_cuda_bf16_scoring_batched_matches_single(tmp_path):
    folder = save_qrm_like(tmp_path, tiny.tiny_tokenizer(), hidden_size=256, intermediate_size=512,
                           num_attention_heads=4, num_key_value_heads=2)
    with MODELS.use("reward", str(folder), sequence_rm.load_reward_model) as rm:
        assert rm.device == "cuda" and rm.model.dtype == torch.bfloat16 and not rm.model.training
        assert rm.model.config._attn_implementation == "sdpa"
        together = sequence_rm.score(rm, PROMPT, ANSWERS, 512)
        alone = [sequence_rm.score(rm, PROMPT, [a], 512)[0] for a in ANSWERS]
    MODELS.unload()
    for t, a in zip(together, alone):
        assert t.score == pytest.approx(a.score, rel=0.03, abs=0.03)
        assert t.score == pytest.approx(sum(g * r for g, r in zip(t.gating, t.rewards)), rel=0.03, abs=0.03)
    assert MODELS.last_eviction["leaked_gb"] < 0.05, MODELS.last_eviction

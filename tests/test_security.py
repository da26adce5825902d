"""SECURITY.md's points that no other test covers: the hub token (read from HF_TOKEN only) never reaches an answer,
a log, the page's config or a run folder, and uploads over the app's size limit are refused by the server."""
import json
import logging

import httpx
import pytest

from core import __main__ as core_main
from core import align, flags, runfolder
from core.runs import new_run_dir
from tests.served import served_classroom
from tests.align_tiny import pair, tiny_config, write_pairs

TOKEN = "hf_SENTINELtokenThatMustNeverBeShown0123456789"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with served_classroom(tmp_path_factory.mktemp("secure"), HF_TOKEN=TOKEN) as client:
        yield client


def test_a_failed_push_says_why_without_the_token(tmp_path, monkeypatch, caplog, capfd):
    import huggingface_hub.constants

    folder = tmp_path / "runs" / "align" / "run-1"
    (folder / "adapter").mkdir(parents=True)
    (folder / "adapter" / "adapter_config.json").write_text("{}")
    (folder / "config.json").write_text(json.dumps({"method": "dpo"}))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # past the app's own offline check, to the hub client
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ValueError, match="could not push to teacher/demo-adapter") as caught:
        align.push_adapter(runfolder.read_run(folder), "teacher/demo-adapter")
    out, err = capfd.readouterr()
    assert TOKEN not in str(caught.value) and TOKEN not in caplog.text and TOKEN not in out + err


def test_the_token_is_in_no_page_config_status_or_answer(served):
    config = httpx.get(served.src.rstrip("/") + "/config", timeout=30).text
    assert "RL summarizer" in config and TOKEN not in config
    assert TOKEN not in served.predict(api_name="/status")
    assert TOKEN not in json.dumps(served.view_api(print_info=False, return_format="dict"))


def test_a_training_job_writes_the_token_nowhere(tiny_lm_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    pairs = write_pairs(tmp_path / "pairs.jsonl", [pair(i) for i in range(8)])
    cfg = tiny_config(tiny_lm_dir, pairs, max_steps=1, eval_prompts=1)
    run_dir = new_run_dir("align")
    argv = ["align", "--run-dir", str(run_dir), *flags.config_argv(cfg, skip=("method",)), "--method", "dpo"]
    core_main.main(argv)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    written = [p for p in run_dir.rglob("*") if p.is_file()]
    assert len(written) > 5 and not [p for p in written if TOKEN.encode() in p.read_bytes()]


def test_an_upload_over_the_size_limit_is_refused_by_the_server(served):
    import app

    limit_mb = int(app.LAUNCH["max_file_size"].removesuffix("mb"))
    url = served.src.rstrip("/") + "/gradio_api/upload"
    small = httpx.post(url, files={"files": ("pairs.jsonl", b'{"prompt": "p"}\n')}, timeout=60)
    assert small.status_code == 200 and small.json(), small.text
    big = httpx.post(url, files={"files": ("pairs.jsonl", b"x" * ((limit_mb + 1) * 2 ** 20))}, timeout=120)
    assert big.status_code == 413, (big.status_code, big.text[:300])
